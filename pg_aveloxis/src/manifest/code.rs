//! Just enough of Python, Ruby, Elixir, Swift and Groovy/Kotlin to find one call's
//! arguments and a constant's value: tokens with comments dropped, string literals
//! read (an interpolated string is not a literal), nesting tracked by the caller.

/// A token of any of the languages.
#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// A name; Python and Ruby join dotted and `::` paths into one (`setuptools.setup`,
    /// `Gem::Specification.new`, `s.name`).
    Ident(String),
    /// A string literal without interpolation.
    Str(String),
    /// A string with interpolation, an f-string: not a value we can know.
    Template,
    /// A Ruby or Elixir atom (`:my_app`).
    Symbol(String),
    /// An Elixir keyword key (`app:`) or Swift/Python-style label is `Ident` + `:`.
    Key(String),
    /// An Elixir module attribute (`@app`).
    Attr(String),
    Punct(char),
    /// `==`, `!=`, `<=`, `>=`, `=>`, `->`, `::` (where not part of a path), `**`.
    Op,
    /// A number literal.
    Number,
}

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Python,
    Ruby,
    Elixir,
    CLike,
}

pub fn tokenize_python(src: &str) -> Vec<Token> {
    tokenize(src, Lang::Python)
}
pub fn tokenize_ruby(src: &str) -> Vec<Token> {
    tokenize(src, Lang::Ruby)
}
pub fn tokenize_elixir(src: &str) -> Vec<Token> {
    tokenize(src, Lang::Elixir)
}
pub fn tokenize_c_like(src: &str) -> Vec<Token> {
    tokenize(src, Lang::CLike)
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn tokenize(src: &str, lang: Lang) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // Comments.
        let hash_comment = matches!(lang, Lang::Python | Lang::Ruby | Lang::Elixir) && c == '#';
        if hash_comment || (lang == Lang::CLike && c == '/' && at(i + 1) == '/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if lang == Lang::CLike && c == '/' && at(i + 1) == '*' {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        // Strings (Python prefixes r, b, u, f and their combinations).
        if lang == Lang::Python && is_ident_start(c) {
            let mut j = i;
            while j < chars.len() && j - i < 2 && "rRbBuUfF".contains(chars[j]) {
                j += 1;
            }
            if j > i && (at(j) == '"' || at(j) == '\'') {
                let prefix: String = chars[i..j].iter().collect::<String>().to_ascii_lowercase();
                let (token, end) = read_string(&chars, j, lang);
                out.push(if prefix.contains('f') { Token::Template } else { token });
                i = end;
                continue;
            }
        }
        if c == '"' || c == '\'' {
            let (token, end) = read_string(&chars, i, lang);
            out.push(token);
            i = end;
            continue;
        }
        // Ruby %q{...} / %Q(...) / %w etc: only %q and %Q are single strings.
        if lang == Lang::Ruby && c == '%' && (at(i + 1) == 'q' || at(i + 1) == 'Q') && "{([<|!/".contains(at(i + 2)) {
            let open = at(i + 2);
            let close = match open {
                '{' => '}',
                '(' => ')',
                '[' => ']',
                '<' => '>',
                other => other,
            };
            let start = i + 3;
            let mut j = start;
            while j < chars.len() && chars[j] != close {
                j += 1;
            }
            let body: String = chars[start..j.min(chars.len())].iter().collect();
            out.push(if at(i + 1) == 'Q' && body.contains("#{") {
                Token::Template
            } else {
                Token::Str(body)
            });
            i = j + 1;
            continue;
        }
        // Atoms.
        if matches!(lang, Lang::Ruby | Lang::Elixir) && c == ':' && is_ident_start(at(i + 1)) {
            let mut j = i + 1;
            while j < chars.len() && (is_ident_char(chars[j]) || chars[j] == '?' || chars[j] == '!') {
                j += 1;
            }
            out.push(Token::Symbol(chars[i + 1..j].iter().collect()));
            i = j;
            continue;
        }
        if lang == Lang::Elixir && c == '@' && is_ident_start(at(i + 1)) {
            let mut j = i + 1;
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            out.push(Token::Attr(chars[i + 1..j].iter().collect()));
            i = j;
            continue;
        }
        if is_ident_start(c) {
            let mut j = i;
            loop {
                while j < chars.len() && is_ident_char(chars[j]) {
                    j += 1;
                }
                // Paths: a.b (Python, Ruby), A::B (Ruby).
                let joins_dot = matches!(lang, Lang::Python | Lang::Ruby) && at(j) == '.' && is_ident_start(at(j + 1));
                let joins_colons = lang == Lang::Ruby && at(j) == ':' && at(j + 1) == ':' && is_ident_start(at(j + 2));
                if joins_dot {
                    j += 1;
                } else if joins_colons {
                    j += 2;
                } else {
                    break;
                }
            }
            let word: String = chars[i..j].iter().collect();
            // Elixir keyword keys: `app: :x` (a colon right after, then not another colon).
            if lang == Lang::Elixir && at(j) == ':' && at(j + 1) != ':' {
                out.push(Token::Key(word));
                i = j + 1;
                continue;
            }
            out.push(Token::Ident(word));
            i = j;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '.' || chars[j] == '_') {
                j += 1;
            }
            out.push(Token::Number);
            i = j;
            continue;
        }
        let two: String = [c, at(i + 1)].iter().collect();
        if ["==", "!=", "<=", ">=", "=>", "->", "::", "**", "+=", "|>", "<>", "++"].contains(&two.as_str()) {
            out.push(Token::Op);
            i += 2;
            continue;
        }
        out.push(Token::Punct(c));
        i += 1;
    }
    out
}

/// Reads the string starting at `start` (a quote); returns it and the index after it.
fn read_string(chars: &[char], start: usize, lang: Lang) -> (Token, usize) {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = if triple { start + 3 } else { start + 1 };
    let mut value = String::new();
    let mut interpolated = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let next = chars[i + 1];
            if lang == Lang::CLike && next == '(' {
                interpolated = true; // Swift's \(expr)
            }
            value.push(match next {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
            i += 2;
            continue;
        }
        if c == quote {
            if !triple {
                i += 1;
                break;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                i += 3;
                break;
            }
        }
        if !triple && c == '\n' && lang != Lang::Elixir {
            break; // an unterminated string: stop at the line's end
        }
        value.push(c);
        i += 1;
    }
    let interpolates = match lang {
        Lang::Ruby | Lang::Elixir => quote == '"' && value.contains("#{"),
        Lang::CLike => quote == '"' && (value.contains('$') || interpolated),
        Lang::Python => false,
    };
    (
        if interpolated || interpolates {
            Token::Template
        } else {
            Token::Str(value)
        },
        i,
    )
}

/// The one value a name is given, however many times; none, or two different ones:
/// unknown.
pub fn unanimous<T: PartialEq + Clone>(values: &[T]) -> Option<T> {
    let first = values.first()?;
    values.iter().all(|v| v == first).then(|| first.clone())
}

/// The index of the `(` of the first call to one of `names` (not a definition).
pub fn find_call(tokens: &[Token], names: &[&str]) -> Option<usize> {
    (0..tokens.len()).find_map(|i| match (&tokens[i], tokens.get(i + 1)) {
        (Token::Ident(name), Some(Token::Punct('('))) if names.contains(&name.as_str()) => {
            let defined = i > 0 && matches!(&tokens[i - 1], Token::Ident(d) if d == "def");
            (!defined).then_some(i + 1)
        }
        _ => None,
    })
}

/// One argument of a call.
pub enum CallArg {
    Keyword(String, Vec<Token>),
    Positional,
}

/// The index just past the bracket matching the one at `open`.
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// The arguments of the call whose `(` is at `open`, split at its own commas.
pub fn call_arguments(tokens: &[Token], open: usize) -> Vec<CallArg> {
    let end = matching(tokens, open).saturating_sub(1);
    let mut args = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut depth = 0;
    let mut push = |current: &mut Vec<Token>| {
        let arg = std::mem::take(current);
        match arg.as_slice() {
            [Token::Ident(k), Token::Punct('=' | ':'), rest @ ..] => {
                args.push(CallArg::Keyword(k.clone(), rest.to_vec()))
            }
            [Token::Key(k), rest @ ..] => args.push(CallArg::Keyword(k.clone(), rest.to_vec())),
            [] => {}
            _ => args.push(CallArg::Positional),
        }
    };
    for t in &tokens[(open + 1).min(end)..end] {
        match t {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                push(&mut current);
                continue;
            }
            _ => {}
        }
        current.push(t.clone());
    }
    push(&mut current);
    args
}

/// The string values `var` is assigned at the top nesting level (`var = "..."`); an
/// assignment of anything else (a concatenation, a call) is left out.
pub fn python_assignments(tokens: &[Token], var: &str) -> Vec<String> {
    let mut depth = 0i32;
    let mut found = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => depth -= 1,
            Token::Ident(name) if depth == 0 && name == var => {
                if let (Some(Token::Punct('=')), Some(Token::Str(s))) = (tokens.get(i + 1), tokens.get(i + 2)) {
                    let continues = matches!(tokens.get(i + 3), Some(Token::Punct('+' | '%' | '.' | '(' | '[')));
                    if !continues {
                        found.push(s.clone());
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// A Ruby spec's name: `Constructor 'name'` / `Constructor('name')`, else the block's
/// `var.name = value` with a constant of the file or `File.basename(__FILE__, ...)`
/// (the file's own name, `own_name`) resolved.
pub fn ruby_block_name(tokens: &[Token], constructor: &str, own_name: Option<String>) -> Option<String> {
    let start = tokens
        .iter()
        .position(|t| matches!(t, Token::Ident(c) if c == constructor))?;
    let after = &tokens[start + 1..];
    match after {
        [Token::Str(s), ..] | [Token::Punct('('), Token::Str(s), ..] => return Some(s.clone()),
        _ => {}
    }
    // The block variable: `do |s|` or `{ |s|`.
    let bar = after.iter().position(|t| *t == Token::Punct('|'))?;
    let Some(Token::Ident(var)) = after.get(bar + 1) else {
        return None;
    };
    let field = format!("{var}.name");
    let at = after.iter().position(|t| matches!(t, Token::Ident(f) if *f == field))?;
    match &after[at + 1..] {
        [Token::Punct('='), value @ ..] => ruby_value(tokens, value, own_name.as_deref(), 0),
        _ => None,
    }
}

/// The string an expression starting at `value` evaluates to, when the file says: a
/// literal (not followed by `+`), `File.basename(__FILE__, ...)` (the file's own name),
/// or a variable or constant the file assigns one of those (`Foo::NAME` by its last part).
fn ruby_value(tokens: &[Token], value: &[Token], own_name: Option<&str>, depth: usize) -> Option<String> {
    match value {
        [Token::Str(s), rest @ ..] if !matches!(rest.first(), Some(Token::Punct('+'))) => Some(s.clone()),
        [Token::Ident(f), Token::Punct('('), Token::Ident(file), ..] if f == "File.basename" && file == "__FILE__" => {
            own_name.map(str::to_owned)
        }
        [Token::Ident(var), rest @ ..]
            if depth < 4 && !matches!(rest.first(), Some(Token::Punct('(' | '+' | '[' | '.'))) =>
        {
            let short = var.rsplit("::").next().unwrap_or(var);
            let values: Vec<Option<String>> = (0..tokens.len())
                .filter(|&i| {
                    matches!(&tokens[i], Token::Ident(v) if v == short || v == var)
                        && tokens.get(i + 1) == Some(&Token::Punct('='))
                })
                .map(|i| ruby_value(tokens, &tokens[i + 2..], own_name, depth + 1))
                .collect();
            unanimous(&values).flatten()
        }
        _ => None,
    }
}

/// The value after a keyword key inside the brackets opened at `open`, at their own
/// level (not in a nested list).
fn keyword_in(tokens: &[Token], open: usize, key: &str) -> Option<Token> {
    let end = matching(tokens, open);
    let mut depth = 0;
    for i in open..end {
        match &tokens[i] {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => depth -= 1,
            Token::Key(k) if depth == 1 && k == key => return tokens.get(i + 1).cloned(),
            _ => {}
        }
    }
    None
}

/// The first `[` after `from` (the keyword list a mix function returns).
fn next_list(tokens: &[Token], from: usize) -> Option<usize> {
    tokens[from..]
        .iter()
        .position(|t| *t == Token::Punct('['))
        .map(|p| from + p)
}

/// The body start of `def name` / `defp name` in a mix file.
fn mix_function(tokens: &[Token], name: &str) -> Option<usize> {
    tokens.windows(2).position(|w| {
        matches!(&w[0], Token::Ident(d) if d == "def" || d == "defp") && matches!(&w[1], Token::Ident(n) if n == name)
    })
}

/// A mix project's Hex package name (see `manifest::mix_name`).
pub fn mix_package_name(tokens: &[Token]) -> Option<String> {
    let attr = |name: &str| {
        tokens.windows(2).find_map(|w| match w {
            [Token::Attr(a), Token::Symbol(v) | Token::Str(v)] if a == name => Some(v.clone()),
            _ => None,
        })
    };
    let value = |t: Token| match t {
        Token::Symbol(v) | Token::Str(v) => Some(v),
        Token::Attr(a) => attr(&a),
        _ => None,
    };
    let project = next_list(tokens, mix_function(tokens, "project")?)?;
    // package: [name: ...] inline, or in package/0.
    let package_list = match keyword_in(tokens, project, "package") {
        Some(Token::Punct('[')) => {
            let at = (project..tokens.len()).find(|&i| tokens[i] == Token::Key("package".into()))?;
            Some(at + 1)
        }
        _ => mix_function(tokens, "package").and_then(|f| next_list(tokens, f)),
    };
    if let Some(name) = package_list
        .and_then(|list| keyword_in(tokens, list, "name"))
        .and_then(value)
    {
        return Some(name);
    }
    keyword_in(tokens, project, "app").and_then(value)
}

/// The `name:` argument of Swift's `Package(...)`, a `let` constant resolved.
pub fn swift_package_name(tokens: &[Token]) -> Option<String> {
    let open = (0..tokens.len()).find(|&i| {
        matches!(&tokens[i], Token::Ident(p) if p == "Package")
            && tokens.get(i + 1) == Some(&Token::Punct('('))
            && !(i > 0 && tokens[i - 1] == Token::Punct('.'))
    })? + 1;
    let value = call_arguments(tokens, open).into_iter().find_map(|arg| match arg {
        CallArg::Keyword(k, v) if k == "name" => Some(v),
        _ => None,
    })?;
    match value.as_slice() {
        [Token::Str(s)] => Some(s.clone()),
        [Token::Ident(var)] => tokens.windows(4).find_map(|w| match w {
            [Token::Ident(l), Token::Ident(v), Token::Punct('='), Token::Str(s)]
                if (l == "let" || l == "var") && v == var =>
            {
                Some(s.clone())
            }
            _ => None,
        }),
        _ => None,
    }
}

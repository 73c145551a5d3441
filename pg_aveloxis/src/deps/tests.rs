//! The parsers on real files (fixtures/, their sources and the facts checked in
//! fixtures/SOURCES.md), and the joining of manifests with their lockfiles.

use super::{file_kind, normalize_name, parse_file, resolve, Kind, Resolved};

fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/deps/fixtures")
}

/// The dependency file a fixture stands for: its last `__` segment is the file name, and
/// a workflow's path is rebuilt (`.github__workflows__ci.yml`).
fn original_path(fixture: &str) -> String {
    let file = fixture.rsplit('/').next().unwrap_or(fixture);
    if let Some(i) = file.find(".github__workflows__") {
        return file[i..].replace("__", "/");
    }
    file.rsplit("__").next().unwrap_or(file).to_owned()
}

/// Every fixture parses, and every fact SOURCES.md states about it holds:
/// `name @ version` (installed or pinned at exactly that version), `name ~ requirement`
/// (declared with that requirement text), `!name` (not reported). The table names every
/// fixture and every fixture is in the table.
#[test]
fn real_files_yield_what_they_state() {
    let dir = fixtures_dir();
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).expect("fixtures/SOURCES.md");
    let mut listed = std::collections::BTreeSet::new();
    let mut facts = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, message: String| {
        if !ok {
            failures.push(message);
        }
    };
    for line in sources.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        if cells.len() < 6 || !dir.join(cells[0]).is_file() {
            continue;
        }
        let fixture = cells[0];
        if !fixture.contains('/') {
            listed.insert(fixture.to_owned());
        }
        let path = original_path(fixture);
        let content = std::fs::read_to_string(dir.join(fixture)).expect("fixture text");
        let (ecosystem, kind) = file_kind(&path).unwrap_or_else(|| panic!("{fixture}: {path} is no dependency file"));
        let parsed = parse_file(&path, &content)
            .unwrap()
            .unwrap_or_else(|e| panic!("{fixture}: {e}"));
        assert!(!parsed.deps.is_empty(), "{fixture}: nothing parsed");
        let (rows, errors) = resolve(&[(path.clone(), content.clone())]);
        assert!(errors.is_empty(), "{fixture}: {errors:?}");
        let named = |name: &str| -> Vec<&Resolved> {
            let key = normalize_name(ecosystem, name);
            rows.iter()
                .filter(|r| normalize_name(ecosystem, &r.name) == key)
                .collect()
        };
        for fact in cells[5].split(" ; ").map(str::trim).filter(|f| !f.is_empty()) {
            facts += 1;
            if let Some(name) = fact.strip_prefix('!') {
                check(
                    named(name.trim()).is_empty(),
                    format!("{fixture}: {name} reported: {:?}", named(name.trim())),
                );
            } else if let Some((name, version)) = fact.split_once(" @ ") {
                let found = named(name.trim());
                check(
                    found.iter().any(|r| r.version.as_deref() == Some(version.trim())),
                    format!("{fixture}: {name} @ {version} not found ({kind:?}); rows for it: {found:?}"),
                );
                if kind == Kind::Lockfile {
                    check(
                        found.iter().any(|r| r.resolution == "locked"),
                        format!("{fixture}: {name} not locked"),
                    );
                }
            } else if let Some((name, requirement)) = fact.split_once(" ~ ") {
                let found = named(name.trim());
                check(
                    found
                        .iter()
                        .any(|r| r.requirement.as_deref() == Some(requirement.trim())),
                    format!("{fixture}: {name} ~ {requirement} not found; rows for it: {found:?}"),
                );
            } else {
                panic!("{fixture}: fact {fact:?} is none of `name @ version`, `name ~ requirement`, `!name`");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} facts do not hold:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f != "SOURCES.md")
        .collect();
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    assert!(unlisted.is_empty(), "fixtures missing from SOURCES.md: {unlisted:?}");
    assert!(facts >= 100, "only {facts} facts checked");
}

fn repo(files: &[(&str, &str)]) -> Vec<Resolved> {
    let files: Vec<(String, String)> = files.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect();
    let (rows, errors) = resolve(&files);
    assert!(errors.is_empty(), "{errors:?}");
    rows
}

fn row<'a>(rows: &'a [Resolved], name: &str) -> &'a Resolved {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} missing from {rows:?}"))
}

/// The installed version comes from the lockfile, never a range's lower bound; what the
/// lockfile adds is transitive.
#[test]
fn manifests_take_their_lockfiles_installed_versions() {
    let rows = repo(&[
        (
            "web/package.json",
            r#"{"dependencies": {"express": "^4.18.0"}, "devDependencies": {"jest": "~29.0.0"}}"#,
        ),
        (
            "web/package-lock.json",
            r#"{"lockfileVersion": 3, "packages": {"": {"dependencies": {"express": "^4.18.0"}, "devDependencies": {"jest": "~29.0.0"}},
                "node_modules/express": {"version": "4.18.2"}, "node_modules/jest": {"version": "29.0.3", "dev": true},
                "node_modules/accepts": {"version": "1.3.8"}, "node_modules/express/node_modules/debug": {"version": "2.6.9"}}}"#,
        ),
    ]);
    let express = row(&rows, "express");
    assert_eq!(
        (express.version.as_deref(), express.resolution, express.direct),
        (Some("4.18.2"), "locked", true)
    );
    assert_eq!(express.requirement.as_deref(), Some("^4.18.0"));
    assert_eq!(express.lockfile_path.as_deref(), Some("web/package-lock.json"));
    assert_eq!(row(&rows, "jest").scope, "development");
    let accepts = row(&rows, "accepts");
    assert_eq!(
        (accepts.direct, accepts.manifest_path.as_str()),
        (false, "web/package-lock.json")
    );
    assert_eq!(row(&rows, "debug").version.as_deref(), Some("2.6.9"));
    assert_eq!(rows.len(), 4);
}

#[test]
fn workspace_members_lock_at_the_root_and_ranges_stay_ranges() {
    let rows = repo(&[
        ("Cargo.toml", "[workspace]\nmembers = [\"crates/a\"]\n[workspace.dependencies]\nserde = \"1\"\n"),
        ("crates/a/Cargo.toml", "[package]\nname = \"a\"\n[dependencies]\nserde = { workspace = true }\nsyn = \"2\"\n"),
        (
            "Cargo.lock",
            "version = 3\n[[package]]\nname = \"a\"\nversion = \"0.1.0\"\n[[package]]\nname = \"serde\"\nversion = \"1.0.195\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n[[package]]\nname = \"syn\"\nversion = \"1.0.109\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n[[package]]\nname = \"syn\"\nversion = \"2.0.48\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        ),
        ("tools/requirements.txt", "requests>=2.28\nidna==3.6\nflask\n"),
    ]);
    assert_eq!(row(&rows, "serde").version.as_deref(), Some("1.0.195"));
    // Two versions of syn in the lock: the one the requirement "2" matches.
    let syn: Vec<_> = rows.iter().filter(|r| r.name == "syn").collect();
    assert_eq!(
        syn.iter().find(|r| r.direct).unwrap().version.as_deref(),
        Some("2.0.48")
    );
    assert!(syn.iter().any(|r| !r.direct && r.version.as_deref() == Some("1.0.109")));
    assert!(
        rows.iter().all(|r| r.name != "a"),
        "the workspace's own crate is no dependency"
    );
    let requests = row(&rows, "requests");
    assert_eq!((requests.version.as_deref(), requests.resolution), (None, "range"));
    assert_eq!(row(&rows, "idna").resolution, "exact");
    assert_eq!(row(&rows, "flask").resolution, "unpinned");
}

#[test]
fn unreadable_files_are_reported_with_their_path_and_the_rest_resolves() {
    let files = vec![
        ("package.json".to_string(), "{ not json".to_string()),
        (
            "go.mod".to_string(),
            "module x\nrequire golang.org/x/text v0.14.0\n".to_string(),
        ),
    ];
    let (rows, errors) = resolve(&files);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "package.json");
    assert!(errors[0].error.starts_with("not JSON"), "{}", errors[0].error);
    assert_eq!(rows.len(), 1);
}

#[test]
fn kinds_by_path() {
    assert_eq!(file_kind("a/b/package-lock.json"), Some(("npm", Kind::Lockfile)));
    assert_eq!(file_kind("requirements-dev.txt"), Some(("PyPI", Kind::Manifest)));
    assert_eq!(file_kind("requirements/test.txt"), None);
    assert_eq!(
        file_kind(".github/workflows/ci.yml"),
        Some(("GitHub Actions", Kind::Manifest))
    );
    assert_eq!(file_kind("docs/.github/workflows/ci.yml"), None);
    assert_eq!(file_kind("src/App.csproj"), Some(("NuGet", Kind::Manifest)));
    assert_eq!(file_kind(".csproj"), None);
    assert_eq!(file_kind("README.md"), None);
    assert_eq!(
        original_path("actions__checkout__.github__workflows__test.yml"),
        ".github/workflows/test.yml"
    );
}

/// `*` of a served glob: any run of characters but `/`.
fn glob_matches(glob: &str, text: &str) -> bool {
    match glob.split_once('*') {
        None => glob == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .take_while(|i| !rest[..*i].contains('/'))
                .any(|i| rest.is_char_boundary(i) && glob_matches(tail, &rest[i..]))
        }
    }
}

/// The globs served to agents select exactly the files the parsers read.
#[test]
fn served_globs_select_what_the_parsers_read() {
    let selected = |path: &str| {
        let file = path.rsplit('/').next().unwrap();
        super::patterns().iter().any(|(applies_to, glob)| match *applies_to {
            "file" => glob_matches(glob, file),
            _ => glob_matches(glob, path),
        })
    };
    let mut paths: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| original_path(&e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p != "SOURCES.md")
        .collect();
    paths.extend(
        [
            "web/package.json",
            "requirements-dev.txt",
            "ci/test_requirements.txt",
            "requirements/base.txt",
            "src/App.fsproj",
            "lib/x.gemspec",
            ".github/workflows/ci.yaml",
            "docs/.github/workflows/ci.yml",
            ".github/workflows/sub/x.yml",
            "README.md",
            "package.json.bak",
            "Cargo.toml.orig",
            "go.sum",
        ]
        .map(String::from),
    );
    for path in paths {
        assert_eq!(
            selected(&path),
            file_kind(&path).is_some(),
            "{path}: served globs and parsers disagree"
        );
    }
}

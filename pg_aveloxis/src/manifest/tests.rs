//! The parsers on real manifests (fixtures/, their sources in fixtures/SOURCES.md) and on
//! the small cases each rule exists for.

use super::{contents_text, decode, manifest_type, parse};

fn name(path: &str, content: &str) -> Option<String> {
    parse(path, content).expect("a manifest kind").1
}

/// Every fixture's kind and declared name are what SOURCES.md says a reader of the file
/// finds; the table names every fixture and every fixture is in the table.
#[test]
fn real_manifests_declare_what_their_sources_say() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/manifest/fixtures");
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).expect("fixtures/SOURCES.md");
    let mut checked = std::collections::BTreeSet::new();
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
        let file = cells[0];
        let expected = match cells[5] {
            "NULL" => None,
            other => Some(other.to_owned()),
        };
        // owner__repo__dir__file is the file's path in its repository.
        let path = file.replace("__", "/");
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let (kind, got) = parse(&path, &decode(&bytes)).unwrap_or_else(|| panic!("{file}: not a manifest kind"));
        assert_eq!(got, expected, "{file} ({kind})");
        checked.insert(file.to_owned());
    }
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "SOURCES.md")
        .collect();
    assert_eq!(
        checked, on_disk,
        "every fixture has its row in SOURCES.md, and only those"
    );
    let kinds: std::collections::BTreeSet<&str> = checked
        .iter()
        .filter_map(|f| manifest_type(&f.replace("__", "/")))
        .collect();
    assert!(kinds.len() >= 16, "real files of every ecosystem: {kinds:?}");
}

#[test]
fn kinds_come_from_the_file_name_in_any_directory() {
    for (path, kind) in [
        ("package.json", Some("npm")),
        ("packages/core/package.json", Some("npm")),
        ("Cargo.toml", Some("cargo")),
        ("python/setup.py", Some("pypi")),
        ("setup.cfg", Some("pypi")),
        ("pyproject.toml", Some("pypi")),
        ("pom.xml", Some("maven")),
        ("build.gradle.kts", Some("maven")),
        ("Gemfile", Some("rubygems")),
        ("rails.gemspec", Some("rubygems")),
        ("composer.json", Some("composer")),
        ("mix.exs", Some("hex")),
        ("Package.swift", Some("swiftpm")),
        ("pubspec.yaml", Some("pub")),
        ("src/Foo/Foo.csproj", Some("nuget")),
        ("Foo.fsproj", Some("nuget")),
        ("Foo.vbproj", Some("nuget")),
        ("aeson.cabal", Some("hackage")),
        ("conanfile.py", Some("conan")),
        ("conanfile.txt", Some("conan")),
        ("Alamofire.podspec", Some("cocoapods")),
        ("Alamofire.podspec.json", Some("cocoapods")),
        ("Project.toml", Some("julia")),
        ("JuliaProject.toml", Some("julia")),
        ("DESCRIPTION", Some("cran")),
        ("recipe/meta.yaml", Some("conda")),
        ("recipe/recipe.yaml", Some("conda")),
        ("README.md", None),
        ("package.json.bak", None),
        (".cabal", None),
        ("description", None),
    ] {
        assert_eq!(manifest_type(path), kind, "{path}");
    }
    assert_eq!(parse("README.md", "name: x"), None);
}

#[test]
fn templates_and_variables_are_resolved_from_the_file_or_left_null() {
    // Jinja conda recipes.
    let meta = "{% set name = \"Foo-Bar\" %}\n{% set version = \"1.0\" %}\n\npackage:\n  name: {{ name|lower }}\n  version: {{ version }}\n";
    assert_eq!(name("meta.yaml", meta).as_deref(), Some("foo-bar"));
    let meta = "{% set name = 'py_x' %}\npackage:\n  name: \"{{ name | replace('_', '-') }}\"\n";
    assert_eq!(name("meta.yaml", meta).as_deref(), Some("py-x"));
    let meta = "package:\n  name: {{ name }}\n  version: 1\n";
    assert_eq!(name("meta.yaml", meta), None, "an undefined variable is not a name");
    let meta = "package:\n  name: {{ name.lower() }}-core  # the core\n{% set name = \"Abc\" %}\n";
    assert_eq!(name("meta.yaml", meta).as_deref(), Some("abc-core"));
    // rattler-build recipes.
    let recipe = "context:\n  name: MyPkg\n  version: \"2.0\"\n\npackage:\n  name: ${{ name|lower }}\n  version: ${{ version }}\n";
    assert_eq!(name("recipe.yaml", recipe).as_deref(), Some("mypkg"));
    let recipe = "package:\n  name: ${{ name }}\n";
    assert_eq!(name("recipe.yaml", recipe), None);
    // Elixir module attributes.
    let mix = "defmodule X.MixProject do\n  use Mix.Project\n  @app :my_app\n  def project do\n    [app: @app, version: \"0.1.0\"]\n  end\nend\n";
    assert_eq!(name("mix.exs", mix).as_deref(), Some("my_app"));
    let mix = "defmodule X.MixProject do\n  def project do\n    [app: @app, version: \"0.1.0\"]\n  end\nend\n";
    assert_eq!(name("mix.exs", mix), None, "@app not defined in the file");
    // Python dict lookups and variables.
    let setup = "about = {}\nexec(open('x/__version__.py').read(), about)\nsetup(name=about['__title__'], version=about['__version__'])\n";
    assert_eq!(name("setup.py", setup), None);
    let setup = "NAME = 'fancy-lib'\nsetup(\n    name=NAME,  # the distribution\n    version='1.0',\n)\n";
    assert_eq!(name("setup.py", setup).as_deref(), Some("fancy-lib"));
    let setup = "from setuptools import setup\nsetup(**config)\n";
    assert_eq!(name("setup.py", setup), None);
    let setup = "setup(name=f'{prefix}-x')\n";
    assert_eq!(name("setup.py", setup), None, "an f-string is a template");
    // Maven properties; MSBuild properties.
    let pom = "<project><properties><n>core</n></properties><artifactId>lib-${n}</artifactId></project>";
    assert_eq!(name("pom.xml", pom).as_deref(), Some("lib-core"));
    let pom = "<project><artifactId>${undefined.prop}</artifactId></project>";
    assert_eq!(name("pom.xml", pom), None);
    let csproj = "<Project Sdk=\"Microsoft.NET.Sdk\"><PropertyGroup><AssemblyName>Acme.Tools</AssemblyName><PackageId>$(AssemblyName)</PackageId></PropertyGroup></Project>";
    assert_eq!(name("Acme.csproj", csproj).as_deref(), Some("Acme.Tools"));
    let csproj = "<Project><PropertyGroup><PackageId>$(MSBuildProjectName).Core</PackageId></PropertyGroup></Project>";
    assert_eq!(name("src/Acme.csproj", csproj).as_deref(), Some("Acme.Core"));
    let csproj = "<Project><PropertyGroup><Product>Acme Suite</Product><AssemblyName>Acme</AssemblyName></PropertyGroup></Project>";
    assert_eq!(
        name("Acme.csproj", csproj),
        None,
        "no PackageId, and a <Product> is not one"
    );
    // npm: a template placeholder is not a name; a scope is.
    assert_eq!(name("package.json", r#"{"name": "{{ project_name }}"}"#), None);
    assert_eq!(
        name("package.json", r#"{"name": "@babel/core"}"#).as_deref(),
        Some("@babel/core")
    );
    assert_eq!(name("package.json", r#"{"private": true}"#), None);
    assert_eq!(name("package.json", "not json"), None);
}

#[test]
fn decoys_are_not_the_package_name() {
    let cargo = "[[bin]]\nname = \"rg\"\n\n[package]\nname = \"ripgrep\"\n\n[lib]\nname = \"grep\"\n";
    assert_eq!(name("Cargo.toml", cargo).as_deref(), Some("ripgrep"));
    let workspace = "[workspace]\nmembers = [\"a\", \"b\"]\n[workspace.package]\nversion = \"1.0\"\n";
    assert_eq!(name("Cargo.toml", workspace), None, "a virtual workspace");
    let pom = "<?xml version=\"1.0\"?>\n<project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n  <parent>\n    <groupId>g</groupId>\n    <artifactId>the-parent</artifactId>\n  </parent>\n  <!-- <artifactId>commented</artifactId> -->\n  <dependencies><dependency><artifactId>dep</artifactId></dependency></dependencies>\n  <artifactId>the-child</artifactId>\n</project>\n";
    assert_eq!(name("pom.xml", pom).as_deref(), Some("the-child"));
    let parent_only = "<project><parent><artifactId>p</artifactId></parent><groupId>g</groupId></project>";
    assert_eq!(name("pom.xml", parent_only), None);
    let swift = "// swift-tools-version:5.5\nimport PackageDescription\nlet package = Package(\n    name: \"MyLib\",\n    dependencies: [.package(name: \"Other\", url: \"https://x\", from: \"1.0.0\")],\n    targets: [.target(name: \"MyLibCore\")]\n)\n";
    assert_eq!(name("Package.swift", swift).as_deref(), Some("MyLib"));
    let swift = "let deps: [Package.Dependency] = [.package(name: \"Dep\", path: \"x\")]\nlet name = \"Lib\"\nlet package = Package(dependencies: deps, name: name)\n";
    assert_eq!(name("Package.swift", swift).as_deref(), Some("Lib"));
    let description =
        "Type: Package\nPackage: ggplot2\nTitle: Create Elegant Data Visualisations\nDepends: R (>= 3.5)\n";
    assert_eq!(name("DESCRIPTION", description).as_deref(), Some("ggplot2"));
    let description = "Type: Package\nTitle: Only a title\n";
    assert_eq!(name("DESCRIPTION", description), None);
    let cabal = "cabal-version: 2.2\nName:          aeson\nversion: 2.2\n\nexecutable aeson-tool\n  name: decoy\n";
    assert_eq!(name("aeson.cabal", cabal).as_deref(), Some("aeson"));
    let mix = "defmodule P.MixProject do\n  def project do\n    [app: :phoenix, name: \"Phoenix\", package: package(), deps: [{:plug, \"~> 1.14\"}]]\n  end\n  defp package do\n    [maintainers: [\"x\"], licenses: [\"MIT\"]]\n  end\nend\n";
    assert_eq!(
        name("mix.exs", mix).as_deref(),
        Some("phoenix"),
        "the docs name is not the package"
    );
    let mix = "defmodule P.MixProject do\n  def project do\n    [app: :my_app, package: package()]\n  end\n  defp package do\n    [name: \"hex_name\", files: [\"lib\"]]\n  end\nend\n";
    assert_eq!(name("mix.exs", mix).as_deref(), Some("hex_name"));
    let umbrella = "defmodule U.MixProject do\n  def project do\n    [apps_path: \"apps\", deps: deps()]\n  end\nend\n";
    assert_eq!(name("mix.exs", umbrella), None, "an umbrella has no app");
    let pubspec = "# pubspec\nname: http\ndescription: A composable API\ndependencies:\n  name_decoy: ^1.0\n";
    assert_eq!(name("pubspec.yaml", pubspec).as_deref(), Some("http"));
    let gradle = "dependencies {\n  implementation 'com.google:guava:31.0'\n}\npublishing { publications { maven(MavenPublication) { artifactId = 'my-lib' } } }\n";
    assert_eq!(name("build.gradle", gradle).as_deref(), Some("my-lib"));
    assert_eq!(name("build.gradle", "plugins { id 'java' }\n"), None);
    let setup_cfg = "[options]\nname = decoy\n[metadata]\nname = my-dist\nversion = attr: x.__version__\n";
    assert_eq!(name("setup.cfg", setup_cfg).as_deref(), Some("my-dist"));
    let conan = "from conan import ConanFile\nclass ZlibConan(ConanFile):\n    name = \"zlib\"\n    def requirements(self):\n        self.requires(\"x/1.0\")\n";
    assert_eq!(name("conanfile.py", conan).as_deref(), Some("zlib"));
    assert_eq!(name("conanfile.txt", "[requires]\nzlib/1.2.13\n"), None);
    assert_eq!(name("Gemfile", "source 'https://rubygems.org'\ngemspec\n"), None);
}

#[test]
fn ruby_specs_by_block_position_constant_and_file_name() {
    let block =
        "Gem::Specification.new do |spec|\n  spec.name          = \"rails\"\n  spec.version = Rails::VERSION\nend\n";
    assert_eq!(name("rails.gemspec", block).as_deref(), Some("rails"));
    let positional = "Gem::Specification.new \"rake\", Rake::VERSION do |s|\n  s.summary = \"x\"\nend\n";
    assert_eq!(name("rake.gemspec", positional).as_deref(), Some("rake"));
    let by_constant = "module Foo\n  NAME = 'foo-gem'\nend\nGem::Specification.new do |s|\n  s.name = Foo::NAME\nend\n";
    assert_eq!(name("foo.gemspec", by_constant).as_deref(), Some("foo-gem"));
    let by_file = "Gem::Specification.new do |s|\n  s.name = File.basename(__FILE__, \".gemspec\")\nend\n";
    assert_eq!(name("lib/thing.gemspec", by_file).as_deref(), Some("thing"));
    let unknown = "Gem::Specification.new do |s|\n  s.name = ENV['GEM_NAME']\nend\n";
    assert_eq!(name("x.gemspec", unknown), None);
    let podspec = "Pod::Spec.new do |s|\n  s.name = 'Alamofire'\n  s.version = '5.8.0'\n  s.dependency 'Other'\nend\n";
    assert_eq!(name("Alamofire.podspec", podspec).as_deref(), Some("Alamofire"));
    let interpolated = "Gem::Specification.new do |s|\n  s.name = \"#{prefix}-x\"\nend\n";
    assert_eq!(name("x.gemspec", interpolated), None);
}

#[test]
fn byte_order_marks_and_utf16_are_read() {
    let mut utf8 = vec![0xEF, 0xBB, 0xBF];
    utf8.extend_from_slice(br#"{"name": "bom-pkg"}"#);
    assert_eq!(name("package.json", &decode(&utf8)).as_deref(), Some("bom-pkg"));
    let text = "<Project><PropertyGroup><PackageId>Wide.Pkg</PackageId></PropertyGroup></Project>";
    let mut le = vec![0xFF, 0xFE];
    le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    assert_eq!(name("Wide.csproj", &decode(&le)).as_deref(), Some("Wide.Pkg"));
    let mut be = vec![0xFE, 0xFF];
    be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    assert_eq!(name("Wide.csproj", &decode(&be)).as_deref(), Some("Wide.Pkg"));
    assert_eq!(
        name("DESCRIPTION", "\u{feff}Package: bommed\n").as_deref(),
        Some("bommed")
    );
    let pyproject = "\u{feff}[project]\nname = \"x\"\n";
    assert_eq!(name("pyproject.toml", pyproject).as_deref(), Some("x"));
}

#[test]
fn python_project_files_follow_their_precedence() {
    let pep621 =
        "[build-system]\nrequires = [\"hatchling\"]\n[project]\nname = \"flask\"\n[tool.poetry]\nname = \"decoy\"\n";
    assert_eq!(name("pyproject.toml", pep621).as_deref(), Some("flask"));
    let poetry = "[tool.poetry]\nname = \"poetry-core\"\nversion = \"1.0\"\n";
    assert_eq!(name("pyproject.toml", poetry).as_deref(), Some("poetry-core"));
    let flit = "[tool.flit.metadata]\nmodule = \"flit_mod\"\n";
    assert_eq!(name("pyproject.toml", flit).as_deref(), Some("flit_mod"));
    let tools_only = "[tool.black]\nline-length = 100\n";
    assert_eq!(name("pyproject.toml", tools_only), None);
    let julia_env = "[deps]\nDataFrames = \"a93c6f00-e57d-5684-b7b6-d8193f3e46c0\"\n";
    assert_eq!(name("Project.toml", julia_env), None);
    let julia = "name = \"DataFrames\"\nuuid = \"a93c6f00-e57d-5684-b7b6-d8193f3e46c0\"\n";
    assert_eq!(name("Project.toml", julia).as_deref(), Some("DataFrames"));
}

#[test]
fn contents_api_bodies_decode_with_their_line_breaks() {
    // GitHub's Contents API: base64 with a newline every 60 characters.
    let body = "eyJuYW1lIjogImEtcGFja2FnZSIsICJ2ZXJzaW9uIjogIjEuMC4wIiwgImRl\nc2NyaXB0aW9uIjogIngifQ==\n";
    let text = contents_text(body, Some("base64")).unwrap();
    assert_eq!(name("package.json", &text).as_deref(), Some("a-package"));
    assert_eq!(contents_text("not base64!", Some("base64")), None);
    assert_eq!(contents_text("{}", Some("utf-8")).as_deref(), Some("{}"));
    assert_eq!(contents_text("{}", None).as_deref(), Some("{}"));
}

/// Every kind's parser on arbitrary text and on every real fixture cut at any character:
/// an answer, never a panic (a panic would be an ERROR failing a whole scan's apply or
/// `reparse_manifests()`).
mod never_panics {
    use super::super::{decode, parse};
    use proptest::prelude::*;

    const PATHS: [&str; 22] = [
        "package.json",
        "Cargo.toml",
        "setup.py",
        "setup.cfg",
        "pyproject.toml",
        "pom.xml",
        "build.gradle",
        "build.gradle.kts",
        "x.gemspec",
        "composer.json",
        "mix.exs",
        "Package.swift",
        "pubspec.yaml",
        "X.csproj",
        "x.cabal",
        "conanfile.py",
        "X.podspec",
        "X.podspec.json",
        "Project.toml",
        "DESCRIPTION",
        "meta.yaml",
        "recipe.yaml",
    ];

    proptest! {
        #[test]
        fn on_arbitrary_text(content in "(?s).{0,400}", kind in 0..PATHS.len()) {
            let _ = parse(PATHS[kind], &content);
        }

        #[test]
        fn on_manifest_like_text(
            content in r#"([a-z_@$:(){}<>="'%|.#\n \t-]|\[|\]|é|名|\{\{|\}\}|\$\{\{|\{%|%\}|\\|name|set|package|Package|app|spec){0,200}"#,
            kind in 0..PATHS.len(),
        ) {
            let _ = parse(PATHS[kind], &content);
        }
    }

    #[test]
    fn on_prefixes_of_the_real_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/manifest/fixtures");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            if file == "SOURCES.md" {
                continue;
            }
            let path = file.replace("__", "/");
            let text = decode(&std::fs::read(dir.join(&file)).unwrap());
            for (cut, _) in text.char_indices().step_by(3) {
                let _ = parse(&path, &text[..cut]);
            }
        }
    }
}

//! The layers of the library (ARCHITECTURE.md, "Layers of the library"): every module of
//! `crates/mdlr/src` is in the table once, imports only from its own layer or lower ones,
//! and the modules form no cycle. The download engine (`blob`, `download`, `transfer`)
//! needs no credential or service, and `batch` uses only what the crate root exports.
//!
//! A module's imports are the `crate::NAME` paths of its code: comments, string and char
//! literals, and the `#[cfg(test)] mod tests` at its end do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The layers of the table, lowest first.
const LAYERS: &str = "values transport identity service results batch";
/// The modules of the download engine, and the layers they may not import from.
const ENGINE: [&str; 3] = ["blob", "download", "transfer"];
const NOT_FOR_THE_ENGINE: [&str; 2] = ["identity", "service"];

/// One row of the table: a layer and its modules.
#[derive(Debug, PartialEq)]
struct Layer {
    name: String,
    modules: Vec<String>,
}

/// The rows after the header `| layer | modules | what it holds |`, lowest layer first.
fn parse_table(doc: &str) -> Option<Vec<Layer>> {
    let mut lines = doc.lines().map(str::trim);
    lines.find(|l| *l == "| layer | modules | what it holds |")?;
    let rows = lines.take_while(|l| l.starts_with('|'));
    let cells = rows.map(|row| row.split('|').map(str::trim).collect::<Vec<_>>());
    let layers = cells.filter(|c| !c[1].chars().all(|c| c == '-' || c == ':'));
    let layers = layers.map(|c| Layer {
        name: c[1].to_string(),
        modules: c.get(2).map_or(vec![], |m| {
            m.split('`').skip(1).step_by(2).map(Into::into).collect()
        }),
    });
    Some(layers.collect())
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Where the comment or the string or char literal starting at `s[i]` ends, if one does
/// (lifetimes are no literals; block comments are taken as unnested).
fn skip(s: &[char], i: usize) -> Option<usize> {
    let is = |k: usize, c: char| s.get(k) == Some(&c);
    let find =
        |k: usize, at: &dyn Fn(usize) -> bool| (k..s.len()).find(|&m| at(m)).unwrap_or(s.len());
    if is(i, '/') && is(i + 1, '/') {
        return Some(find(i, &|m| is(m, '\n')));
    } else if is(i, '/') && is(i + 1, '*') {
        return Some(find(i + 3, &|m| is(m - 1, '*') && is(m, '/')) + 1);
    } else if i > 0 && is_ident(s[i - 1]) {
        return None;
    }
    let j = i + usize::from(is(i, 'b'));
    let hashes = (j + 1..).take_while(|&k| is(k, '#')).count();
    if is(j, 'r') && is(j + 1 + hashes, '"') {
        let close = |m| is(m, '"') && (1..=hashes).all(|h| is(m + h, '#'));
        Some(find(j + 2 + hashes, &close) + 1 + hashes)
    } else if is(j, '"') {
        let escaped = |m: usize| (j + 1..m).rev().take_while(|&k| is(k, '\\')).count() % 2 == 1;
        Some(find(j + 1, &|m| is(m, '"') && !escaped(m)) + 1)
    } else if is(j, '\'') && (is(j + 1, '\\') || is(j + 2, '\'')) {
        Some(find(j + 2 + usize::from(is(j + 1, '\\')), &|m| is(m, '\'')) + 1)
    } else {
        None
    }
}

/// `src` with comments (doc comments too) and literals blanked, line breaks kept.
fn code_only(src: &str) -> String {
    let s: Vec<char> = src.chars().collect();
    let (mut out, mut i) = (String::new(), 0);
    while i < s.len() {
        let Some(end) = skip(&s, i).map(|end| end.min(s.len())) else {
            out.push(s[i]);
            i += 1;
            continue;
        };
        out.extend(s[i..end].iter().map(|&c| if c == '\n' { c } else { ' ' }));
        i = end;
    }
    out
}

/// The code of a module file, up to the `#[cfg(test)]` before its `mod tests`.
fn non_test_code(src: &str) -> String {
    let code = code_only(src);
    let lines: Vec<&str> = code.lines().map(str::trim_end).collect();
    let tests_start = (0..lines.len()).find(|&i| {
        let mut next = lines[i + 1..].iter().map(|l| l.trim());
        let item = next.find(|l| !l.is_empty() && !l.starts_with("#["));
        lines[i].trim() == "#[cfg(test)]" && item.is_some_and(|l| l.starts_with("mod tests"))
    });
    lines[..tests_start.unwrap_or(lines.len())].join("\n")
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> Option<String> {
    let name: String = s.chars().take_while(|&c| is_ident(c)).collect();
    (!name.is_empty()).then_some(name)
}

/// The first segment after every `crate::` in `code`, and of every item of a
/// `crate::{...}` group, nested and multi-line groups included.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate") {
        let rest = code[at + "crate".len()..].trim_start().strip_prefix("::");
        let Some(rest) = rest.filter(|_| !code[..at].ends_with(is_ident)) else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(group) = rest.strip_prefix('{') else {
            found.extend(ident(rest));
            continue;
        };
        let (mut depth, mut item_start) = (0, true);
        for (k, c) in group.char_indices().filter(|(_, c)| !c.is_whitespace()) {
            if std::mem::take(&mut item_start) {
                found.extend(ident(&group[k..]));
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' => item_start = depth == 0,
                _ => {}
            }
        }
    }
    found
}

/// The modules lib.rs declares (`mod x;`, `pub mod x;`) and the names its `pub use`s export.
fn lib_items(lib: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut declared, mut exported) = (BTreeSet::new(), BTreeSet::new());
    for statement in code_only(lib).split(';') {
        if let [.., "mod", name] = statement.split_whitespace().collect::<Vec<_>>()[..] {
            declared.insert(name.to_string());
        }
        if let Some((_, used)) = statement.split_once("pub use ") {
            let leaves = used
                .split([',', '{', '}'])
                .filter_map(|i| i.trim().rsplit(|c| !is_ident(c)).next());
            exported.extend(leaves.filter(|l| !l.is_empty()).map(String::from));
        }
    }
    (declared, exported)
}

/// Every way the table, the module sources (by module name) and lib.rs break the rules.
fn check(table: &[Layer], sources: &BTreeMap<String, String>, lib: &str) -> Vec<String> {
    let mut problems = Vec::new();
    macro_rules! problem {
        ($($message:tt)*) => { problems.push(format!($($message)*)) };
    }
    let mut layer_of: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for (rank, layer) in table.iter().enumerate() {
        for m in &layer.modules {
            let l = layer.name.as_str();
            if let Some(&(_, first)) = layer_of.get(m.as_str()) {
                problem!("`{m}` is listed twice in the layer table: {first}, {l}");
            } else if !sources.contains_key(m) {
                problem!("`{m}` (layer {l}) has no file crates/mdlr/src/{m}.rs");
            }
            layer_of.entry(m).or_insert((rank, l));
        }
    }
    let unlisted = sources.keys().filter(|&m| !layer_of.contains_key(&**m));
    for m in unlisted {
        problem!("{m}.rs is in no layer: add `{m}` to ARCHITECTURE.md's table");
    }
    let rank = |m: &str| layer_of.get(m).map(|l| l.0);
    let layer = |m: &str| layer_of.get(m).map_or("none", |l| l.1);
    let (declared, exported) = lib_items(lib);
    let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (m, src) in sources {
        let paths = crate_paths(&non_test_code(src)).into_iter();
        let (modules, root): (Vec<_>, Vec<_>) = paths.partition(|p| sources.contains_key(p));
        let deps: BTreeSet<String> = modules.into_iter().filter(|d| d != m).collect();
        for d in &deps {
            let (ml, dl) = (layer(m), layer(d));
            let why = if rank(d) > rank(m) && rank(m).is_some() {
                "a higher layer"
            } else if ENGINE.contains(&m.as_str()) && NOT_FOR_THE_ENGINE.contains(&dl) {
                "the download engine needs only the transport and the values"
            } else if m == "batch" {
                "batch uses only what the crate root exports, no module directly"
            } else {
                continue;
            };
            problem!("{m}.rs (layer {ml}) imports crate::{d} (layer {dl}): {why}");
        }
        if m == "batch" {
            let unexported: BTreeSet<_> = root.iter().filter(|n| !exported.contains(*n)).collect();
            for name in unexported {
                problem!("batch.rs uses crate::{name}, which lib.rs does not `pub use`");
            }
        }
        graph.insert(m, deps);
    }
    for layer in table {
        for m in layer.modules.iter().filter(|m| !declared.contains(*m)) {
            problem!("lib.rs does not declare `mod {m};` (layer {})", layer.name);
        }
    }
    problems.extend(cycles(&graph));
    problems
}

/// One `a -> b -> a` line for every cycle a depth-first walk of `graph` runs into.
fn cycles(graph: &BTreeMap<&str, BTreeSet<String>>) -> Vec<String> {
    type Walk<'a> = (Vec<&'a str>, BTreeSet<&'a str>, Vec<String>);
    fn visit<'a>(m: &'a str, graph: &'a BTreeMap<&str, BTreeSet<String>>, walk: &mut Walk<'a>) {
        if let Some(at) = walk.0.iter().position(|p| *p == m) {
            let cycle = walk.0[at..].join(" -> ");
            walk.2.push(format!("module cycle: {cycle} -> {m}"));
        } else if walk.1.insert(m) {
            walk.0.push(m);
            for d in graph.get(m).into_iter().flatten() {
                visit(d, graph, walk);
            }
            walk.0.pop();
        }
    }
    let mut walk = (Vec::new(), BTreeSet::new(), Vec::new());
    graph.keys().for_each(|m| visit(m, graph, &mut walk));
    walk.2
}

const TABLE: &str = "Intro.
| layer | modules | what it holds |
|---|---|---|
| values | `error` `encode` | data, `NotAModule` |
| transport | `http` | requests |
| identity | `auth` | sign-in |
| service | `api` | calls |
| results | `blob` | bytes |
| batch | `batch` | many machines |
`after` the table.
";

const LIB: &str = "mod error;\nmod encode;\npub mod http;\nmod auth;\nmod api;\nmod blob;\n\
    mod batch;\npub use api::{Client as Client, Other};\npub use error::{\n    Error,\n};\n";

/// The names of the layers, lowest first, separated by spaces.
fn layer_names(table: &[Layer]) -> String {
    Vec::from_iter(table.iter().map(|l| l.name.as_str())).join(" ")
}

/// Module sources by name.
fn sources(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    BTreeMap::from_iter(pairs.iter().map(|&(m, s)| (m.into(), s.into())))
}

/// Checks the small tree of `TABLE` and `LIB`, with module sources changed by `changes`.
/// The tree itself is clean: each test sees exactly the problems its changes add.
#[track_caller]
fn problems_with(changes: &[(&str, &str)]) -> Vec<String> {
    let table = parse_table(TABLE).expect("the test table parses");
    let mut tree = sources(&[
        ("error", ""),
        ("encode", "use crate::error::Error;\n"),
        ("http", "use crate::{\n error::{self, E},\n Client};"),
        ("auth", "use crate::http::Request;\n"),
        ("api", "use crate::auth::Token;\nfn f() -> crate::Client {}"),
        ("blob", "use crate::http::Http;\n"),
        ("batch", "use crate::{Client, Error};\n"),
    ]);
    tree.extend(sources(changes));
    check(&table, &tree, LIB)
}

/// The table is read from its header to the first line that is not a row, and only the
/// backticked words of the second column are modules.
#[test]
fn the_table_is_parsed_by_rows_and_second_column() {
    let table = parse_table(TABLE).expect("the test table parses");
    assert_eq!(layer_names(&table), LAYERS);
    assert_eq!(table[0].modules, ["error", "encode"]);
    assert_eq!(parse_table("no table here"), None);
}

/// A value module importing a service module names the file, the module and both layers.
#[test]
fn importing_from_a_higher_layer_is_reported() {
    let problems = problems_with(&[("encode", "use crate::api::Client;\n")]);
    let want = "encode.rs (layer values) imports crate::api (layer service): a higher layer";
    assert_eq!(problems, [want]);
}

/// Two modules of one layer that import each other are reported as a cycle.
#[test]
fn a_cycle_is_reported() {
    let problems = problems_with(&[("error", "fn f(_: crate::encode::X) {}\n")]);
    assert_eq!(problems, ["module cycle: error -> encode -> error"]);
}

/// Comments, doc comments, literals and the unit tests at the end of a file import nothing.
#[test]
fn comments_literals_and_unit_tests_do_not_count() {
    let src = "//! See [`Client`](crate::api::Client).\n/// Like crate::api.\nconst U: &str = \
        \"http://x\"; use crate::error::E;\n/* crate::api */ const S: &str = \"\\\"crate::api\";\n\
        const R: &str = r#\"\"crate::api\"#; const C: char = '\"'; fn f<'a>(_: &'a str) {}\n\
        #[cfg(test)]\n// the unit tests\nmod tests {\n    use crate::api::Client;\n}\n";
    assert_eq!(crate_paths(&non_test_code(src)), ["error"]);
    assert_eq!(problems_with(&[("encode", src)]), Vec::<String>::new());
    let helper = "#[cfg(test)]\nfn helper() {}\nuse crate::api::X;\n";
    assert_eq!(crate_paths(&non_test_code(helper)), ["api"]);
}

/// Each item of a multi-line, nested `use crate::{...}` group gives its first segment.
#[test]
fn use_groups_give_the_first_segment_of_each_item() {
    let src = "use crate::{\n    http::{Request, Response},\n    error::Error,\n};\n";
    assert_eq!(crate_paths(&non_test_code(src)), ["http", "error"]);
    let src =
        "use crate::{a::{b::{c, d}, e}, f, self};\nfn g() { crate :: h(); pub(crate) fn j() {} }";
    assert_eq!(crate_paths(src), ["a", "f", "self", "h"]);
}

/// Files missing from the table, modules without a file and modules listed twice.
#[test]
fn the_table_and_the_files_must_agree() {
    let table = parse_table(&TABLE.replace("`encode` |", "`encode` `http` `gone` |"));
    let table = table.expect("the test table parses");
    let names = "error encode http auth api blob batch new".split(' ');
    let tree = names.map(|m| (m.into(), String::new())).collect();
    let problems = check(&table, &tree, &format!("{LIB}mod gone;\n"));
    let want = [
        "`gone` (layer values) has no file crates/mdlr/src/gone.rs",
        "`http` is listed twice in the layer table: values, transport",
        "new.rs is in no layer: add `new` to ARCHITECTURE.md's table",
    ];
    assert_eq!(problems, want);
}

/// The download engine may import neither the identity layer nor the service layer.
#[test]
fn the_download_engine_needs_no_credential() {
    let problems = problems_with(&[("blob", "use crate::auth::Token;\n")]);
    let want = "blob.rs (layer results) imports crate::auth (layer identity): the download engine \
        needs only the transport and the values";
    assert_eq!(problems, [want]);
}

/// `batch` imports no module directly, and only names lib.rs exports through the root.
#[test]
fn batch_uses_only_the_crate_root() {
    let problems = problems_with(&[("batch", "use crate::{Client, Other, Hidden, api::Call};\n")]);
    let want = [
        "batch.rs (layer batch) imports crate::api (layer service): batch uses only what the crate \
            root exports, no module directly",
        "batch.rs uses crate::Hidden, which lib.rs does not `pub use`",
    ];
    assert_eq!(problems, want);
}

/// lib.rs must declare every module of the table.
#[test]
fn lib_declares_every_module() {
    let table = parse_table(TABLE).expect("the test table parses");
    let modules = table.iter().flat_map(|l| &l.modules);
    let tree = modules.map(|m| (m.clone(), String::new())).collect();
    let problems = check(&table, &tree, &LIB.replace("pub mod http;", "// mod http;"));
    let want = "lib.rs does not declare `mod http;` (layer transport)";
    assert_eq!(problems, [want]);
}

/// The real library: ARCHITECTURE.md's table against `crates/mdlr/src`.
#[test]
fn the_library_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let table = parse_table(&doc).expect("ARCHITECTURE.md has the table of layers");
    assert_eq!(layer_names(&table), LAYERS);
    let src = root.join("crates/mdlr/src");
    let mut tree = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("list crates/mdlr/src") {
        let path = entry.expect("list crates/mdlr/src").path();
        if let Some(m) = path
            .file_name()
            .and_then(|n| n.to_str()?.strip_suffix(".rs"))
            && m != "lib"
        {
            tree.insert(
                m.to_string(),
                fs::read_to_string(&path).expect("read a module"),
            );
        }
    }
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let problems = check(&table, &tree, &lib);
    assert!(
        problems.is_empty(),
        "crates/mdlr/src breaks the layers of ARCHITECTURE.md (\"Layers of the library\"):\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// The CLI decides nothing the service means (ARCHITECTURE.md, "Invariants")

/// The API error codes of SPEC A5, as a program would match them.
const API_CODES: [&str; 15] = [
    "BadRequest",
    "InvalidInput",
    "InvalidRequestBody",
    "MissingRequiredParameter",
    "ODataError",
    "ActiveRequestAlreadyExists",
    "Unauthorized",
    "Forbidden",
    "DisabledFeature",
    "DisallowedOperation",
    "NotFound",
    "ResourceNotFound",
    "TooManyRequests",
    "InternalServerError",
    "AuthenticationFailed",
];

/// Where `source` (a CLI module) matches an API error code or reads an HTTP status:
/// a quoted code, `.status()`, or an HTTP status number (100–599) compared or matched
/// (`status: 429`, `status == 404`, `Some(403)`, `400 =>`). Comments and the unit
/// tests at the end do not count.
fn service_rules_in(file: &str, source: &str) -> Vec<String> {
    let code = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(source);
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or("");
        let at = format!("{file}:{}", n + 1);
        for c in API_CODES {
            if line.contains(&format!("\"{c}\"")) {
                found.push(format!("{at} matches the API error code {c}"));
            }
        }
        if line.contains(".status()") || status_numbers(line) {
            found.push(format!("{at} reads an HTTP status: {}", line.trim()));
        }
    }
    found
}

/// Whether `line` compares or matches an HTTP status number: a whole number from 100
/// to 599 after `status:`, `status ==`, `status !=` or `Some(`, or before `=>`, or as
/// the first of a tuple pattern (`(429, _)`).
fn status_numbers(line: &str) -> bool {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let word_before =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let value: u32 = line[start..i].parse().unwrap_or(0);
        if word_before || !(100..600).contains(&value) {
            continue;
        }
        let before = line[..start].trim_end();
        let after = line[i..].trim_start();
        if ["status:", "status ==", "status !=", "Some("]
            .iter()
            .any(|b| before.ends_with(b))
            || after.starts_with("=>")
            || (before.ends_with('(') && after.starts_with(','))
        {
            return true;
        }
    }
    false
}

/// The check itself finds each kind of service rule, and passes over comments, exit
/// statuses and unit tests.
#[test]
fn service_rules_are_found() {
    let source = "fn f(e: &Error) -> u8 {\n    // \"ActiveRequestAlreadyExists\" in a comment\n    \
                  match e { Error::Api { status: 429, .. } => 75, _ => 0 }\n}\n\
                  fn g(e: &Error) -> bool { e.code() == Some(\"ActiveRequestAlreadyExists\") }\n\
                  fn h(r: &R) -> u16 { r.status() }\nconst EX: u8 = 75; // exit status\n\
                  fn i(s: u64) -> u8 { match s { 60..=3599 => 1, _ => (s.min(255)) as u8 } }\n\
                  fn j(k: (u16, u8)) -> bool { matches!(k, (404, _)) }\n\
                  #[cfg(test)]\nmod tests { const X: &str = \"Forbidden\"; }\n";
    assert_eq!(
        service_rules_in("x.rs", source),
        [
            "x.rs:3 reads an HTTP status: match e { Error::Api { status: 429, .. } => 75, _ => 0 }",
            "x.rs:5 matches the API error code ActiveRequestAlreadyExists",
            "x.rs:6 reads an HTTP status: fn h(r: &R) -> u16 { r.status() }",
            "x.rs:9 reads an HTTP status: fn j(k: (u16, u8)) -> bool { matches!(k, (404, _)) }",
        ]
    );
}

/// No file of `crates/mdlr-cli` matches an API error code or interprets a status code:
/// the library decides what the service means (`Error::kind`, `is_busy`, ...), the CLI
/// only how to say it.
#[test]
fn the_cli_decides_nothing_the_service_means() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/mdlr-cli/src");
    let mut found = Vec::new();
    for entry in fs::read_dir(&src).expect("list crates/mdlr-cli/src") {
        let path = entry.expect("list crates/mdlr-cli/src").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| n.ends_with(".rs")) {
            let source = fs::read_to_string(&path).expect("read a CLI module");
            found.extend(service_rules_in(&name, &source));
        }
    }
    assert!(
        found.is_empty(),
        "the CLI decides what the service means:\n  {}",
        found.join("\n  ")
    );
}

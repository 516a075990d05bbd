//! The repository explains itself (issue 19): no tracked file cites notes that live outside it
//! (a user of the repository has only the repository), and every pointer into `docs/` names a
//! page, and a section of it, that exists.
//!
//! - Citations of the outside notes: the sibling `shared` folder, "notes" followed by a
//!   section sign, the notes' file names, or a bare section sign followed by a number, in any
//!   tracked text file. `RFC 4648 §4` and the like are not notes.
//! - Markdown links of `README.md` and `docs/*.md`: each relative link names an existing file,
//!   and an anchor (`protocol.md#errors`) a heading of that file.
//! - Code comments: each `docs/<page>.md[#<section>]` names an existing page and section.
//!
//! Files are those `git ls-files` lists; outside a git checkout the test has nothing to walk
//! and is skipped, unless `CI` is set.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// This file, which names what it looks for.
const SELF: &str = "tests/tests/repository_self_contained.rs";

/// What cites the notes outside the repository (matched case-insensitively). Spelled in
/// pieces, so that a plain search of the repository for them finds nothing here either.
const FORBIDDEN: [&str; 5] = [
    concat!("..", "/shared"),
    concat!("notes ", "§"),
    concat!("reference-server", ".md"),
    concat!("python-sdk", ".md"),
    concat!("apkam", ".md"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The tracked text files (path relative to the root, contents), `target/` left out; `None`
/// outside a git checkout.
fn tracked_text_files(root: &Path) -> Option<Vec<(String, String)>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let listing = String::from_utf8(output.stdout).expect("git paths are UTF-8");
    let mut files = Vec::new();
    for path in listing.split('\0').filter(|p| !p.is_empty()) {
        if path.starts_with("target/") {
            continue;
        }
        // Deleted in the working tree but still tracked: nothing to read.
        let Ok(bytes) = std::fs::read(root.join(path)) else {
            continue;
        };
        if bytes.contains(&0) {
            continue; // binary
        }
        if let Ok(text) = String::from_utf8(bytes) {
            files.push((path.to_string(), text));
        }
    }
    Some(files)
}

fn files_or_skip() -> Option<Vec<(String, String)>> {
    let files = tracked_text_files(&root());
    if files.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`git ls-files` failed in {}: CI needs a git checkout",
            root().display()
        );
        eprintln!("skipped: not a git checkout, or no git");
    }
    files
}

/// Whether `line` cites a section of the outside notes by its bare section sign: `§` followed
/// by a number, not in an RFC citation.
fn bare_section_sign(line: &str) -> bool {
    if line.contains("RFC") {
        return false;
    }
    line.match_indices('§').any(|(at, sign)| {
        line[at + sign.len()..]
            .trim_start()
            .starts_with(|c: char| c.is_ascii_digit())
    })
}

#[test]
fn no_file_cites_notes_outside_the_repository() {
    let Some(files) = files_or_skip() else { return };
    let mut found = Vec::new();
    for (path, text) in &files {
        if path == SELF {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let cited = FORBIDDEN.iter().find(|f| lower.contains(*f)).copied();
            let cited = cited.or_else(|| bare_section_sign(line).then_some("§<number>"));
            if let Some(what) = cited {
                found.push(format!("{path}:{}: {what}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} line(s) cite notes that are not in the repository; say what they rely on in docs/ \
         and point there instead:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The anchors GitHub makes for a Markdown file's headings: lower-cased, everything but letters,
/// digits, spaces, `-` and `_` dropped, spaces made `-`; a repeated one gets `-1`, `-2`…
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let title = line[hashes..].trim().trim_end_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|&c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_default();
        out.insert(if *count == 0 {
            slug
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    out
}

/// `path` with `.` and `..` resolved, relative to the root; `None` if it leaves the root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Checks that `target` (relative to the root) exists and, for a Markdown file, has `anchor`;
/// the problem otherwise.
fn check_target(
    files: &HashMap<&str, &str>,
    target: &Path,
    anchor: Option<&str>,
) -> Option<String> {
    if !root().join(target).exists() {
        return Some(format!("{} does not exist", target.display()));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    let key = target.to_str()?;
    let text = match files.get(key) {
        Some(text) => (*text).to_string(),
        None if key.ends_with(".md") => std::fs::read_to_string(root().join(target)).ok()?,
        None => return None,
    };
    (key.ends_with(".md") && !anchors(&text).contains(anchor))
        .then(|| format!("{key} has no section #{anchor}"))
}

/// The targets of a Markdown file's inline links `[text](target)`, outside code blocks, with
/// their line numbers.
fn markdown_links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].trim().to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn markdown_links_of_the_readme_and_docs_name_existing_files_and_sections() {
    let Some(files) = files_or_skip() else { return };
    let by_path: HashMap<&str, &str> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let pages: Vec<&(String, String)> = files
        .iter()
        .filter(|(path, _)| {
            path == "README.md" || (path.starts_with("docs/") && path.ends_with(".md"))
        })
        .collect();
    assert!(
        pages.iter().any(|(path, _)| path == "docs/README.md"),
        "docs/README.md, the index, is not tracked"
    );
    let mut broken = Vec::new();
    for (path, text) in pages {
        let dir = Path::new(path).parent().unwrap_or(Path::new(""));
        for (line, link) in markdown_links(text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match link.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                Some(PathBuf::from(path))
            } else {
                normalise(&dir.join(file))
            };
            let problem = match target {
                Some(target) => check_target(&by_path, &target, anchor),
                None => Some("it leaves the repository".to_string()),
            };
            if let Some(problem) = problem {
                broken.push(format!("{path}:{line}: ({link}): {problem}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every `docs/<page>.md[#<section>]` in `text`, with line numbers: the page path and the
/// section, if any.
fn docs_references(text: &str) -> Vec<(usize, String, Option<String>)> {
    let page_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let anchor_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("docs/") {
            // `foo/docs/x.md` or `../docs/x.md` is not the repository's docs/ folder.
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || "/._-".contains(c)) {
                continue;
            }
            let rest = &line[at + "docs/".len()..];
            let name_len = rest.find(|c: char| !page_char(c)).unwrap_or(rest.len());
            let Some(after) = rest[name_len..].strip_prefix(".md") else {
                continue;
            };
            let page = format!("docs/{}.md", &rest[..name_len]);
            let anchor = after.strip_prefix('#').map(|a| {
                let len = a.find(|c: char| !anchor_char(c)).unwrap_or(a.len());
                a[..len].trim_end_matches('-').to_string()
            });
            out.push((n + 1, page, anchor));
        }
    }
    out
}

#[test]
fn pointers_into_docs_name_existing_pages_and_sections() {
    let Some(files) = files_or_skip() else { return };
    let by_path: HashMap<&str, &str> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let mut broken = Vec::new();
    let mut pointers = 0;
    for (path, text) in &files {
        if path == SELF {
            continue;
        }
        for (line, page, anchor) in docs_references(text) {
            pointers += 1;
            if let Some(problem) = check_target(&by_path, Path::new(&page), anchor.as_deref()) {
                let shown = anchor.map_or(page.clone(), |a| format!("{page}#{a}"));
                broken.push(format!("{path}:{line}: {shown}: {problem}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "pointers into docs/ that lead nowhere:\n{}",
        broken.join("\n")
    );
    assert!(pointers > 0, "no file points into docs/ at all");
}

#[test]
fn the_checks_recognise_what_they_look_for() {
    assert!(bare_section_sign("ttr is seconds (§3.1), not ms"));
    assert!(bare_section_sign("see § 12"));
    assert!(!bare_section_sign("Standard base64 (RFC 4648 §4)"));
    assert!(!bare_section_sign("a § alone"));

    let page = "# Title\n\n## Which errors close\n```text\n## not a heading\n```\n### `notify:all`\n## Errors\n## Errors\n";
    let found = anchors(page);
    for anchor in [
        "title",
        "which-errors-close",
        "notifyall",
        "errors",
        "errors-1",
    ] {
        assert!(found.contains(anchor), "{anchor} in {found:?}");
    }
    assert!(!found.contains("not-a-heading"));

    assert_eq!(
        markdown_links("see [a](protocol.md#errors) and [b](../README.md).\n```\n[c](x.md)\n```\n"),
        vec![
            (1, "protocol.md#errors".to_string()),
            (1, "../README.md".to_string())
        ]
    );

    let refs = docs_references(
        "//! (docs/protocol.md#which-errors-close). and docs/README.md, not helm/docs/x.md\n",
    );
    assert_eq!(
        refs,
        vec![
            (
                1,
                "docs/protocol.md".to_string(),
                Some("which-errors-close".to_string())
            ),
            (1, "docs/README.md".to_string(), None),
        ]
    );
    assert_eq!(
        normalise(Path::new("docs/../README.md")),
        Some(PathBuf::from("README.md"))
    );
    assert_eq!(normalise(Path::new("../x")), None);
}

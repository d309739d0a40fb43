//! Name patterns for access rules and limits: `*` matches any run of characters (the empty
//! run too), `?` exactly one character, and every other character only itself. There is no
//! escape and no character class: server, tool and prompt names and resource URIs rarely
//! hold a literal `*` or `?`, and a small language is one operators can read at a glance.
//!
//! Patterns come from the config, texts from requests, so matching must stay cheap for any
//! pair: [`matches`] walks both strings once with the classic two-pointer algorithm, which
//! only ever remembers the last `*`. It never recurses or backtracks past that star, so a
//! pattern like `*a*a*a*a*b` against a long run of `a`s costs at most
//! `pattern length × text length` steps, not an exponential number. [`Glob`] compiles the
//! shapes rules use most (`*`, exact names, `prefix*`, `*suffix`) so those cost one string
//! comparison.

/// Whether `text` matches `pattern` (`*` any run, `?` one character, everything else
/// literal). Characters, not bytes: `?` matches one Unicode scalar value.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    // Byte offsets into both strings; they always sit on character boundaries because they
    // only ever advance by whole characters.
    let mut pattern_at = 0;
    let mut text_at = 0;
    // After the last `*` seen: where the pattern resumes, and where in the text the star's
    // run currently ends. On a mismatch the star swallows one more character and the rest
    // of the pattern is tried again from there; earlier stars never need revisiting,
    // because the last star can absorb anything they could.
    let mut last_star: Option<(usize, usize)> = None;

    while let Some(text_char) = text[text_at..].chars().next() {
        match pattern[pattern_at..].chars().next() {
            Some('*') => {
                pattern_at += 1;
                last_star = Some((pattern_at, text_at));
                continue;
            }
            Some(pattern_char) if pattern_char == '?' || pattern_char == text_char => {
                pattern_at += pattern_char.len_utf8();
                text_at += text_char.len_utf8();
                continue;
            }
            _ => {}
        }
        let Some((resume_pattern_at, star_end)) = last_star else {
            return false;
        };
        // `star_end` is below `text_at` or equal to it, so a character follows it.
        let swallowed = text[star_end..].chars().next().map_or(1, char::len_utf8);
        last_star = Some((resume_pattern_at, star_end + swallowed));
        pattern_at = resume_pattern_at;
        text_at = star_end + swallowed;
    }
    // The text is used up: only stars (each matching the empty run) may be left.
    pattern[pattern_at..].bytes().all(|byte| byte == b'*')
}

/// A pattern compiled once per config, so the common shapes cost one comparison per check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Glob {
    /// `*` (or `**`…): every text.
    Any,
    /// No wildcard: the text must equal it.
    Exact(Box<str>),
    /// `prefix*`: the text must start with it.
    Prefix(Box<str>),
    /// `*suffix`: the text must end with it.
    Suffix(Box<str>),
    /// Anything else, matched by [`matches`].
    Pattern(Box<str>),
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        let is_wild = |c: char| c == '*' || c == '?';
        if pattern.bytes().all(|byte| byte == b'*') && !pattern.is_empty() {
            return Glob::Any;
        }
        if !pattern.contains(is_wild) {
            return Glob::Exact(pattern.into());
        }
        if let Some(prefix) = pattern.strip_suffix('*')
            && !prefix.contains(is_wild)
        {
            return Glob::Prefix(prefix.into());
        }
        if let Some(suffix) = pattern.strip_prefix('*')
            && !suffix.contains(is_wild)
        {
            return Glob::Suffix(suffix.into());
        }
        Glob::Pattern(pattern.into())
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(exact) => **exact == *text,
            Glob::Prefix(prefix) => text.starts_with(&**prefix),
            Glob::Suffix(suffix) => text.ends_with(&**suffix),
            Glob::Pattern(pattern) => matches(pattern, text),
        }
    }
}

/// Several patterns; a text matches the list when it matches any of them (an empty list
/// matches nothing: whether "empty" means "everything" is the caller's decision).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct GlobList {
    globs: Box<[Glob]>,
}

impl GlobList {
    pub(crate) fn new(patterns: &[String]) -> GlobList {
        GlobList {
            globs: patterns.iter().map(|pattern| Glob::new(pattern)).collect(),
        }
    }

    pub(crate) fn matches_any(&self, text: &str) -> bool {
        self.globs.iter().any(|glob| glob.matches(text))
    }

    /// Whether some pattern is there to match (a list given as `[]` matches nothing).
    pub(crate) fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }
}

/// A list of patterns where an empty list means "every name" (a rule's `servers`, a limit
/// rule's `tools`): the config says "defaults to every server".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameFilter {
    All,
    Only(GlobList),
}

impl NameFilter {
    pub(crate) fn new(patterns: &[String]) -> NameFilter {
        if patterns.is_empty() {
            NameFilter::All
        } else {
            NameFilter::Only(GlobList::new(patterns))
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        match self {
            NameFilter::All => true,
            NameFilter::Only(globs) => globs.matches_any(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Checks both the general matcher and the compiled form, which must always agree.
    fn check(pattern: &str, text: &str, expected: bool) {
        assert_eq!(
            matches(pattern, text),
            expected,
            "matches({pattern:?}, {text:?})"
        );
        assert_eq!(
            Glob::new(pattern).matches(text),
            expected,
            "Glob::new({pattern:?}).matches({text:?})"
        );
    }

    #[test]
    fn literals_match_only_themselves() {
        check("get_clients", "get_clients", true);
        check("get_clients", "get_client", false);
        check("get_clients", "get_clientss", false);
        check("get_clients", "Get_clients", false);
        check("", "", true);
        check("", "a", false);
        check("a.b", "axb", false);
        check("[ab]", "a", false);
        check("[ab]", "[ab]", true);
    }

    #[test]
    fn star_matches_any_run_including_the_empty_one() {
        check("*", "", true);
        check("*", "anything at all", true);
        check("**", "", true);
        check("get_*", "get_", true);
        check("get_*", "get_clients", true);
        check("get_*", "set_clients", false);
        check("*_task", "delete_task", true);
        check("*_task", "_task", true);
        check("*_task", "delete_tasks", false);
        check("demo://*", "demo://tasks/1", true);
        check("demo://*", "other://tasks/1", false);
        check("a*b*c", "abc", true);
        check("a*b*c", "axxbyyc", true);
        check("a*b*c", "axxbyy", false);
        check("a*b*c", "acb", false);
        check("*a*", "bab", true);
        check("*a*", "bbb", false);
        check("a**b", "ab", true);
        check("a*", "", false);
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        check("?", "a", true);
        check("?", "", false);
        check("?", "ab", false);
        check("get_?", "get_x", true);
        check("get_?", "get_", false);
        check("get_?", "get_xy", false);
        check("?*", "", false);
        check("?*", "a", true);
        check("*?", "abc", true);
        check("a?c*", "abcdef", true);
    }

    #[test]
    fn characters_are_matched_not_bytes() {
        check("?", "é", true);
        check("??", "é", false);
        check("caf?", "café", true);
        check("*é", "café", true);
        check("*é*", "naïve café au lait", true);
        check("日本*", "日本語", true);
        check("日?語", "日本語", true);
        check("*x", "日本語", false);
    }

    #[test]
    fn compiled_shapes_are_recognised() {
        assert_eq!(Glob::new("*"), Glob::Any);
        assert_eq!(Glob::new("***"), Glob::Any);
        assert_eq!(Glob::new("abc"), Glob::Exact("abc".into()));
        assert_eq!(Glob::new(""), Glob::Exact("".into()));
        assert_eq!(Glob::new("get_*"), Glob::Prefix("get_".into()));
        assert_eq!(Glob::new("*_task"), Glob::Suffix("_task".into()));
        assert_eq!(Glob::new("get_?"), Glob::Pattern("get_?".into()));
        assert_eq!(Glob::new("*a*"), Glob::Pattern("*a*".into()));
    }

    /// Patterns that make a backtracking matcher take exponential time must stay fast: a
    /// failing match of many stars against a long text takes at most pattern × text steps.
    #[test]
    fn adversarial_patterns_stay_fast() {
        let long_a = "a".repeat(20_000);
        let started = Instant::now();
        check("*a*a*a*a*a*a*a*a*a*a*b", &long_a, false);
        check("*a*a*a*a*b", &long_a, false);
        check(&"*a".repeat(50), &long_a, true);
        check(&format!("{}b", "a*".repeat(50)), &long_a, false);
        check("*?*?*?*?*?*?*?*?*?*?b", &long_a, false);
        let mut near_miss = long_a.clone();
        near_miss.push('b');
        check("*a*a*a*a*b", &near_miss, true);
        // Generous for a slow debug build on a shared machine; the exponential algorithm
        // would not finish at all.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn glob_lists_and_name_filters() {
        let list = GlobList::new(&["get_*".to_string(), "list".to_string()]);
        assert!(list.matches_any("get_x"));
        assert!(list.matches_any("list"));
        assert!(!list.matches_any("delete"));
        assert!(!GlobList::new(&[]).matches_any(""));
        assert!(GlobList::new(&[]).is_empty());

        assert!(NameFilter::new(&[]).matches("anything"));
        let only = NameFilter::new(&["demo".to_string()]);
        assert!(only.matches("demo"));
        assert!(!only.matches("other"));
    }
}

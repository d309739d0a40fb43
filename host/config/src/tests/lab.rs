//! Tests of `[lab.shadow]`: candidates, their defaults and their errors.

use std::time::Duration;

use super::super::*;
use super::{assert_at, fail, ok};

/// A server and the cache on lines 1 to 6, then `lab`.
fn with_cache(lab: &str) -> String {
    format!("[servers.demo]\ncommand = \"d\"\n\n[cache]\nenabled = true\n\n{lab}")
}

#[test]
fn no_candidates_means_no_shadow() {
    let config = ok(&with_cache(""));
    assert!(!config.shadow.is_enabled());
    assert_eq!(config.shadow, ShadowConfig::default());
    assert!(config.describe().contains("shadow: off"));
}

#[test]
fn candidates_are_plugins_or_the_builtin_with_other_settings() {
    let config = ok(&with_cache(
        r#"[lab.shadow]
dir = "candidates.d"
queue = 100
truth_samples_per_second = 2.5

[[lab.shadow.candidate]]
file = "seed-ttl-table.wasm"
config = { note = 1 }

[[lab.shadow.candidate]]
name = "short"
default_ttl = "5s"
config_rules = false
ttl = { demo = { get_tasks = "1s" } }
"#,
    ));
    let shadow = &config.shadow;
    assert!(shadow.is_enabled() && shadow.samples_truth());
    assert_eq!(
        (shadow.queue, shadow.max_keys),
        (100, DEFAULT_SHADOW_MAX_KEYS)
    );
    let names: Vec<&str> = shadow.candidates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["seed-ttl-table", "short"]);
    assert_eq!(
        shadow.candidates[0].policy,
        CandidatePolicy::Plugin {
            file: "seed-ttl-table.wasm".to_owned(),
            config_json: r#"{"note":1}"#.to_owned()
        }
    );
    assert!(shadow.candidates[0].config_rules);
    let CandidatePolicy::Builtin {
        default_ttl, ttl, ..
    } = &shadow.candidates[1].policy
    else {
        panic!("the second candidate is the built-in policy");
    };
    assert_eq!(*default_ttl, Some(Some(Duration::from_secs(5))));
    let ttl = ttl.as_ref().map(|table| table.lookup("demo", "get_tasks"));
    assert_eq!(ttl, Some(Some(Duration::from_secs(1))));
    assert!(!shadow.candidates[1].config_rules);
    assert_eq!(shadow.dir, Some(std::path::PathBuf::from("candidates.d")));
    let described = config.describe();
    assert!(
        described.contains("candidate short: the built-in policy, without the config's"),
        "{described}"
    );
}

#[test]
fn shadow_errors_name_the_field() {
    let no_cache = fail(
        "[servers.demo]\ncommand = \"d\"\n\n[cache]\nenabled = false\n\n[[lab.shadow.candidate]]\nname = \"a\"\n",
    );
    assert_at(&no_cache, "test.toml", 7, "lab.shadow.candidate");
    assert!(
        no_cache.to_string().contains("need the cache on"),
        "{no_cache}"
    );

    let no_dir = fail(&with_cache("[[lab.shadow.candidate]]\nfile = \"a.wasm\"\n"));
    assert_at(&no_dir, "test.toml", 8, "lab.shadow.candidate[0].file");
    assert!(no_dir.to_string().contains("[lab.shadow] dir"), "{no_dir}");

    let escaping = fail(&with_cache(
        "[lab.shadow]\ndir = \"p\"\n\n[[lab.shadow.candidate]]\nfile = \"../a.wasm\"\n",
    ));
    assert_at(&escaping, "test.toml", 11, "lab.shadow.candidate[0].file");

    let mixed = fail(&with_cache(
        "[lab.shadow]\ndir = \"p\"\n\n[[lab.shadow.candidate]]\nfile = \"a.wasm\"\ndefault_ttl = \"1s\"\n",
    ));
    assert!(
        mixed.to_string().contains("cannot set default_ttl"),
        "{mixed}"
    );

    let twice = fail(&with_cache(
        "[[lab.shadow.candidate]]\nname = \"x\"\n\n[[lab.shadow.candidate]]\nname = \"x\"\n",
    ));
    assert_at(&twice, "test.toml", 11, "lab.shadow.candidate[1].name");

    let bad_name = fail(&with_cache("[[lab.shadow.candidate]]\nname = \"a b\"\n"));
    assert_at(&bad_name, "test.toml", 8, "lab.shadow.candidate[0].name");

    let reserved = fail(&with_cache(
        "[[lab.shadow.candidate]]\nname = \"production\"\n",
    ));
    assert_at(&reserved, "test.toml", 8, "lab.shadow.candidate[0].name");

    let unknown_server = fail(&with_cache(
        "[[lab.shadow.candidate]]\nttl = { demoo = { get_tasks = \"1s\" } }\n",
    ));
    assert!(
        unknown_server.to_string().contains("demoo"),
        "{unknown_server}"
    );

    let rate = fail(&with_cache(
        "[lab.shadow]\ntruth_samples_per_second = -1\n[[lab.shadow.candidate]]\nname = \"a\"\n",
    ));
    assert_at(&rate, "test.toml", 8, "lab.shadow.truth_samples_per_second");

    let too_many: String = (0..=MAX_SHADOW_CANDIDATES)
        .map(|index| format!("[[lab.shadow.candidate]]\nname = \"c{index}\"\n"))
        .collect();
    let too_many = fail(&with_cache(&too_many));
    assert!(too_many.to_string().contains("more than the"), "{too_many}");

    let same_dir = fail(&with_cache(
        "[plugins]\ndir = \"p\"\n\n[lab.shadow]\ndir = \"p\"\n",
    ));
    assert_at(&same_dir, "test.toml", 11, "lab.shadow.dir");

    let unknown_key = fail(&with_cache("[lab.shadow]\nqueu = 5\n"));
    assert!(unknown_key.to_string().contains("queu"), "{unknown_key}");
}

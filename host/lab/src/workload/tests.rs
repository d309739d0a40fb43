use super::*;

fn preset(name: &str) -> Workload {
    Workload::resolve(name).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn every_shipped_preset_parses_and_generates() {
    for (name, _) in PRESETS {
        let mut workload = preset(name);
        workload.calls = 500;
        let calls: Vec<PlannedCall> = workload.calls().collect();
        assert_eq!(calls.len(), 500, "{name}");
        assert!(
            calls.windows(2).all(|pair| pair[0].at <= pair[1].at),
            "{name}: arrivals go forward"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_calls_and_another_seed_does_not() {
    let mut workload = preset("seed-tasks");
    workload.calls = 2000;
    let first: Vec<TraceRecord> = workload.calls().map(|call| call.to_record()).collect();
    let again: Vec<TraceRecord> = workload.calls().map(|call| call.to_record()).collect();
    assert_eq!(first, again);
    workload.seed += 1;
    let other: Vec<TraceRecord> = workload.calls().map(|call| call.to_record()).collect();
    assert_ne!(first, other);
}

#[test]
fn the_seed_mix_is_eighty_twenty_and_the_rate_holds() {
    let mut workload = preset("seed-tasks");
    workload.calls = 20_000;
    workload.bursts = None;
    let calls: Vec<PlannedCall> = workload.calls().collect();
    let writes = calls.iter().filter(|call| call.write).count() as f64 / calls.len() as f64;
    assert!((writes - 0.20).abs() < 0.02, "write share {writes}");
    assert!((workload.write_ratio() - 0.20).abs() < 1e-9);
    let span = calls.last().map_or(0.0, |call| call.at.as_secs_f64());
    let rate = calls.len() as f64 / span;
    assert!((rate - 200.0).abs() < 10.0, "rate {rate}");
}

#[test]
fn bursts_bring_calls_closer_together() {
    let mut workload = preset("write-storm");
    workload.calls = 30_000;
    let Some(bursts) = workload.bursts else {
        panic!("write-storm has bursts")
    };
    let calls: Vec<PlannedCall> = workload.calls().collect();
    let in_burst = |call: &PlannedCall| {
        call.at.as_secs_f64() % bursts.every.as_secs_f64() < bursts.length.as_secs_f64()
    };
    let burst_calls = calls.iter().filter(|call| in_burst(call)).count() as f64;
    let burst_time_share = bursts.length.as_secs_f64() / bursts.every.as_secs_f64();
    // Without bursts 10% of the time would hold 10% of the calls; at 8x it holds ~47%.
    let share = burst_calls / calls.len() as f64;
    assert!(share > 3.0 * burst_time_share, "burst share {share}");
}

#[test]
fn popular_keys_are_asked_for_more_often() {
    let mut workload = preset("read-heavy");
    workload.calls = 20_000;
    let mut counts = std::collections::HashMap::new();
    for call in workload.calls().filter(|call| &*call.tool == "get_tasks") {
        *counts
            .entry(call.arguments["limit"].as_u64().unwrap_or(u64::MAX))
            .or_insert(0u32) += 1;
    }
    let top = counts.get(&0).copied().unwrap_or(0);
    let tenth = counts.get(&9).copied().unwrap_or(0);
    assert!(top > 5 * tenth.max(1), "rank 1: {top}, rank 10: {tenth}");
}

#[test]
fn a_write_changes_what_the_reads_of_its_table_return() {
    let text = r#"
name = "t"
server = "demo"
calls = 400
rate = 100.0
[[read]]
tool = "get_tasks"
weight = 1
tables = ["tasks"]
latency = "1ms"
[[read]]
tool = "get_clients"
weight = 1
tables = ["clients"]
latency = "1ms"
[[write]]
tool = "create_task"
weight = 1
tables = ["tasks"]
latency = "1ms"
"#;
    let workload = Workload::parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let mut tasks = Vec::new();
    let mut clients = std::collections::HashSet::new();
    let mut writes_since = 0;
    for call in workload.calls() {
        match &*call.tool {
            "create_task" => writes_since += 1,
            "get_tasks" => {
                tasks.push((writes_since, call.truth));
                writes_since = 0;
            }
            _ => {
                clients.insert(call.truth);
            }
        }
    }
    assert_eq!(clients.len(), 1, "nothing writes clients");
    for pair in tasks.windows(2) {
        let ((_, before), (writes, after)) = (pair[0], pair[1]);
        assert_eq!(
            before != after,
            writes > 0,
            "a read changes exactly when a write came between"
        );
    }
}

#[test]
fn templates_fill_keys_and_sequence_numbers() {
    let template =
        serde_json::json!({"id": "$key", "title": "task {n} of {key}", "n": "$n", "keep": 3});
    assert_eq!(
        substitute(&template, 4, 17),
        serde_json::json!({"id": 4, "title": "task 17 of 4", "n": 17, "keep": 3})
    );
}

#[test]
fn bad_presets_name_the_file_line_and_field() {
    let error = Workload::parse(
        "name = \"x\"\nserver = \"demo\"\ncalls = 10\nrate = 1.0\nratee = 2\n",
        Path::new("w.toml"),
    )
    .err()
    .map(|error| error.to_string())
    .unwrap_or_default();
    assert!(
        error.contains("w.toml") && error.contains("line 5") && error.contains("ratee"),
        "{error}"
    );
    let error = Workload::parse("name = \"x\"\nserver = \"demo\"\ncalls = 10\nrate = -1.0\n[[read]]\ntool = \"a\"\nweight = 1\nlatency = \"1ms\"\n", Path::new("w.toml"))
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("`rate` must be a positive number"),
        "{error}"
    );
    let error = Workload::resolve("no-such-preset")
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("seed-tasks") && error.contains("read-heavy"),
        "{error}"
    );
}

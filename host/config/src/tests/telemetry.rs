//! `[telemetry]`: OpenTelemetry traces over OTLP/HTTP.

use super::*;

#[test]
fn without_the_table_tracing_is_off() {
    let config = ok(MINIMAL);
    assert_eq!(config.telemetry, TelemetryConfig::default());
    assert!(!config.telemetry.is_on());
    assert!(config.describe().contains("telemetry: off"));
}

#[test]
fn an_endpoint_turns_tracing_on_and_header_values_stay_secret() {
    let config = ok(&format!(
        "{MINIMAL}[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"bridge-a\"\nsample_ratio = 0.25\nmax_queue = 100\nexport_timeout = \"2s\"\nexport_interval = \"50ms\"\nheaders = {{ Authorization = \"Bearer ${{TOKEN}}\" }}\n"
    ));
    let telemetry = &config.telemetry;
    assert_eq!(
        telemetry.traces_url.as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert_eq!(telemetry.service_name, "bridge-a");
    assert_eq!(telemetry.sample_ratio, 0.25);
    assert_eq!(telemetry.max_queue, 100);
    assert_eq!(telemetry.export_timeout, Duration::from_secs(2));
    assert_eq!(telemetry.export_interval, Duration::from_millis(50));
    assert_eq!(telemetry.headers[0].0, "authorization");
    assert_eq!(telemetry.headers[0].1.expose(), "Bearer s3cr3t-value");
    let described = config.describe();
    assert!(
        described.contains("telemetry: OTLP/HTTP protobuf to http://127.0.0.1:4318/v1/traces"),
        "{described}"
    );
    assert!(
        !described.contains("s3cr3t"),
        "check-config printed a header value"
    );
}

#[test]
fn bad_settings_name_their_field() {
    let cases = [
        (
            "otlp_endpoint = \"grpc://c:4317\"",
            "telemetry.otlp_endpoint",
        ),
        ("sample_ratio = 1.5", "telemetry.sample_ratio"),
        ("max_queue = 0", "telemetry.max_queue"),
        ("export_timeout = \"0s\"", "telemetry.export_timeout"),
        ("export_interval = \"2h\"", "telemetry.export_interval"),
        ("service_name = \"\"", "telemetry.service_name"),
        (
            "headers = { \"bad header\" = \"x\" }",
            "telemetry.headers.\"bad header\"",
        ),
    ];
    let line = MINIMAL.lines().count() + 2;
    for (setting, field) in cases {
        let error = fail(&format!("{MINIMAL}[telemetry]\n{setting}\n"));
        assert_at(&error, "test.toml", line, field);
    }
    let unknown = fail(&format!("{MINIMAL}[telemetry]\nendpoint = \"http://c\"\n"));
    assert!(unknown.to_string().contains("endpoint"), "{unknown}");
}

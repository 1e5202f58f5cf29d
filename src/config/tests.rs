use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate("default").unwrap();
}

#[test]
fn unknown_field_names_field_and_line() {
    let e = Config::parse("schedulerName: x\nbindd: {}\n", "cfg.yaml").unwrap_err();
    let m = e.to_string();
    assert!(m.starts_with("cfg.yaml: "), "{m}");
    assert!(m.contains("bindd"), "{m}");
    assert!(m.contains("line 2") || m.contains("2:"), "{m}");
}

#[test]
fn bad_values_name_the_field() {
    let cases = [
        (
            "spark: {executorCapacityMix: \"spot=forty\"}\n",
            "spark.executorCapacityMix",
        ),
        ("spark: {driverCapacity: cheap}\n", "spark.driverCapacity"),
        ("bind: {concurrency: 0}\n", "bind.concurrency"),
        ("metrics: {address: nowhere}\n", "metrics.address"),
        ("defaultProfile: nope\n", "defaultProfile"),
        (
            "profiles: [{name: a, plugins: [{name: NodeFoo}]}]\ndefaultProfile: a\n",
            "profiles[0].plugins[0].name",
        ),
    ];
    for (text, field) in cases {
        let e = Config::parse(text, "c.yaml").unwrap_err();
        assert!(e.to_string().contains(field), "{text:?}: {e}");
    }
}

#[test]
fn wrong_type_is_a_parse_error() {
    let e = Config::parse("bind: {concurrency: lots}\n", "c.yaml").unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}

#[test]
fn shipped_config_file_is_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/spark-fleet.yaml");
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg, Config::default());
}

#[test]
fn simulation_prices_are_validated() {
    let e = Config::parse("simulation: {pricePerVcpuHour: {spot: -1}}\n", "c.yaml").unwrap_err();
    assert!(
        e.to_string().contains("simulation.pricePerVcpuHour.spot"),
        "{e}"
    );
    let c = Config::parse("simulation: {pricePerVcpuHour: {spot: 0.01}}\n", "c.yaml").unwrap();
    assert_eq!(c.simulation.price_per_vcpu_hour.get("spot"), Some(&0.01));
}

#[test]
fn admission_provider_and_weight_are_validated() {
    let c = Config::parse("admission: {provider: gke, preferredWeight: 7}\n", "c.yaml").unwrap();
    assert_eq!(c.admission.provider, crate::admission::Provider::Gke);
    assert_eq!(c.admission.preferred_weight, 7);
    let c = Config::parse("admission: {provider: eks}\n", "c.yaml").unwrap();
    assert_eq!(
        c.admission.provider,
        crate::admission::Provider::EksManagedNodeGroups
    );
    let e = Config::parse("admission:\n  provider: nomad\n", "c.yaml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("c.yaml: "), "{msg}");
    assert!(msg.contains("nomad"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
    let e = Config::parse("admission: {preferredWeight: 0}\n", "c.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "c.yaml: admission.preferredWeight: 0 is outside 1..=100 (the range of a node-affinity weight)"
    );
}

//! Field validation the real API server applies to objects a scheduler writes, where a
//! lenient server would accept a request the real one refuses.
//!
//! - events.k8s.io/v1 Event, as `ValidateEventCreate` / `ValidateEventUpdate`
//!   (k8s.io/kubernetes pkg/apis/core/validation/events.go): eventTime, action, reason,
//!   reportingController, reportingInstance required; length limits (note 1024 bytes);
//!   type Normal or Warning; series count >= 2 with lastObservedTime; the deprecated
//!   core/v1 fields unset; on update, the identifying fields are immutable.
//! - coordination.k8s.io/v1 Lease: leaseDurationSeconds > 0, leaseTransitions >= 0.
//! - Times are decoded as the real server does: a `MicroTime` with exactly six fractional
//!   digits (`RFC3339Micro`), a `Time` as RFC 3339 (400 otherwise: the body does not decode).

use serde_json::Value;

use super::resources::ResourceType;
use super::status::ApiError;

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

fn is_events_v1(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

fn is_lease(rt: &ResourceType) -> bool {
    rt.group == "coordination.k8s.io" && rt.plural == "leases"
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `2006-01-02T15:04:05` followed by `rest`; returns `rest`.
fn date_time_prefix(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let fields_ok = digits(&s[0..4])
        && b[4] == b'-'
        && digits(&s[5..7])
        && b[7] == b'-'
        && digits(&s[8..10])
        && b[10] == b'T'
        && digits(&s[11..13])
        && b[13] == b':'
        && digits(&s[14..16])
        && b[16] == b':'
        && digits(&s[17..19]);
    fields_ok.then(|| &s[19..])
}

/// `Z` or `±hh:mm`.
fn zone(s: &str) -> bool {
    if s == "Z" {
        return true;
    }
    let b = s.as_bytes();
    b.len() == 6
        && (b[0] == b'+' || b[0] == b'-')
        && digits(&s[1..3])
        && b[3] == b':'
        && digits(&s[4..6])
}

/// Go's `time.Parse(RFC3339Micro, s)`: the layout's `.000000` needs exactly six digits.
pub fn is_micro_time(s: &str) -> bool {
    let Some(rest) = date_time_prefix(s) else {
        return false;
    };
    rest.len() > 7 && rest.starts_with('.') && digits(&rest[1..7]) && zone(&rest[7..])
}

/// Go's `time.Parse(RFC3339, s)`: fractional seconds are accepted when parsing.
pub fn is_time(s: &str) -> bool {
    let Some(rest) = date_time_prefix(s) else {
        return false;
    };
    match rest.strip_prefix('.') {
        Some(frac) => {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            (1..=9).contains(&n) && zone(&frac[n..])
        }
        None => zone(rest),
    }
}

fn undecodable(kind: &str, field: &str, value: &Value) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version \"v1\" cannot be handled: {field}: parsing time {value} failed"
    ))
}

/// A time field that is present must decode; `null` means unset.
fn check_time(kind: &str, obj: &Value, pointer: &str, micro: bool) -> Result<(), ApiError> {
    match obj.pointer(pointer) {
        None | Some(Value::Null) => Ok(()),
        Some(v @ Value::String(s)) => {
            let ok = if micro { is_micro_time(s) } else { is_time(s) };
            if ok {
                Ok(())
            } else {
                Err(undecodable(kind, pointer, v))
            }
        }
        Some(v) => Err(undecodable(kind, pointer, v)),
    }
}

fn is_set(obj: &Value, pointer: &str) -> bool {
    obj.pointer(pointer).is_some_and(|v| !v.is_null())
}

/// `validation.IsQualifiedName`: an optional DNS-subdomain prefix and a name part of at
/// most 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(is_dns_subdomain)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn invalid(rt: &ResourceType, obj: &Value, errors: &[String]) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    let name = name_of(obj);
    Err(ApiError::invalid(
        rt,
        name,
        format!(
            "{}.{} \"{name}\" is invalid: [{}]",
            rt.kind,
            rt.group,
            errors.join(", ")
        ),
    ))
}

fn check_times(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if is_events_v1(rt) {
        check_time(rt.kind, obj, "/eventTime", true)?;
        check_time(rt.kind, obj, "/series/lastObservedTime", true)?;
        check_time(rt.kind, obj, "/deprecatedFirstTimestamp", false)?;
        check_time(rt.kind, obj, "/deprecatedLastTimestamp", false)?;
    }
    if is_lease(rt) {
        check_time(rt.kind, obj, "/spec/acquireTime", true)?;
        check_time(rt.kind, obj, "/spec/renewTime", true)?;
    }
    Ok(())
}

fn series_errors(obj: &Value, errors: &mut Vec<String>) {
    if let Some(series) = obj.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errors.push("series.count: Invalid value: \"\": should be at least 2".into());
        }
        if !is_set(series, "/lastObservedTime") {
            errors.push("series.lastObservedTime: Required value".into());
        }
    }
}

fn event_create_errors(obj: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let name = name_of(obj);
    if !is_dns_subdomain(name) {
        errors.push(format!(
            "metadata.name: Invalid value: {name:?}: must be a lowercase RFC 1123 subdomain"
        ));
    }
    series_errors(obj, &mut errors);
    if !is_set(obj, "/eventTime") {
        errors.push("eventTime: Required value".into());
    }
    let ty = str_at(obj, "/type");
    if ty != "Normal" && ty != "Warning" {
        errors.push(format!(
            "type: Invalid value: \"\": has invalid value: {ty}"
        ));
    }
    for field in [
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
    ] {
        if obj.get(field).is_some_and(|v| !v.is_null() && v != 0) {
            errors.push(format!("{field}: Invalid value: \"\": needs to be unset"));
        }
    }
    if ["component", "host"]
        .iter()
        .any(|f| !str_at(obj, &format!("/deprecatedSource/{f}")).is_empty())
    {
        errors.push("source: Invalid value: \"\": needs to be unset".into());
    }
    let namespace = str_at(obj, "/metadata/namespace");
    if str_at(obj, "/regarding/namespace").is_empty()
        && namespace != "default"
        && namespace != "kube-system"
    {
        errors.push(
            "involvedObject.namespace: Invalid value: \"\": does not match event.namespace".into(),
        );
    }
    let controller = str_at(obj, "/reportingController");
    if controller.is_empty() {
        errors.push("reportingController: Required value".into());
    } else if !is_qualified_name(controller) {
        errors.push(format!(
            "reportingController: Invalid value: {controller:?}: must be a qualified name"
        ));
    }
    for (field, limit) in [
        ("reportingInstance", REPORTING_INSTANCE_LIMIT),
        ("action", ACTION_LIMIT),
        ("reason", REASON_LIMIT),
    ] {
        let v = str_at(obj, &format!("/{field}"));
        if v.is_empty() {
            errors.push(format!("{field}: Required value"));
        } else if v.len() > limit {
            errors.push(format!(
                "{field}: Invalid value: \"\": can have at most {limit} characters"
            ));
        }
    }
    // Go's len: bytes, not characters.
    if str_at(obj, "/note").len() > NOTE_LIMIT {
        errors.push(format!(
            "note: Invalid value: \"\": can have at most {NOTE_LIMIT} characters"
        ));
    }
    errors
}

/// Checks a new object from an API client.
pub fn validate_create(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    check_times(rt, obj)?;
    if is_events_v1(rt) {
        return invalid(rt, obj, &event_create_errors(obj));
    }
    if is_lease(rt) {
        return invalid(rt, obj, &lease_errors(obj));
    }
    Ok(())
}

/// Checks an update (PUT or PATCH result) from an API client.
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Result<(), ApiError> {
    check_times(rt, new)?;
    if is_events_v1(rt) {
        let mut errors = Vec::new();
        if old.get("series") != new.get("series") {
            series_errors(new, &mut errors);
        }
        for field in [
            "regarding",
            "related",
            "reason",
            "note",
            "type",
            "eventTime",
            "action",
            "reportingController",
            "reportingInstance",
        ] {
            let unset = |v: Option<&Value>| v.is_none_or(Value::is_null);
            let (a, b) = (old.get(field), new.get(field));
            if a != b && !(unset(a) && unset(b)) {
                errors.push(format!("{field}: Invalid value: field is immutable"));
            }
        }
        return invalid(rt, new, &errors);
    }
    if is_lease(rt) {
        return invalid(rt, new, &lease_errors(new));
    }
    Ok(())
}

fn lease_errors(obj: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(d) = obj
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
    {
        if d <= 0 {
            errors.push("spec.leaseDurationSeconds: Invalid value: must be greater than 0".into());
        }
    }
    if let Some(t) = obj
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
    {
        if t < 0 {
            errors.push(
                "spec.leaseTransitions: Invalid value: must be greater than or equal to 0".into(),
            );
        }
    }
    errors
}

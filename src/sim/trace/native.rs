//! The native trace format: JSON Lines, a header line then one event per line.

use super::{
    quantize, Event, ResourceList, TimedEvent, Trace, TraceError, TraceHeader, FORMAT_NAME,
    FORMAT_VERSION,
};
use crate::model::Quantity;
use serde::Deserialize;
use std::io::{BufRead, Write};

/// Parses a native trace; `file` names the source in errors (`file:line: problem`).
/// Blank lines are skipped. Seconds and prices are quantized to micro-units.
pub fn parse_jsonl<R: BufRead>(reader: R, file: &str) -> Result<Trace, TraceError> {
    let line_err = |line: usize, message: String| TraceError::Line {
        file: file.to_owned(),
        line,
        message,
    };
    let mut header: Option<TraceHeader> = None;
    let mut events: Vec<TimedEvent> = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|source| TraceError::Io {
            file: format!("{file}:{line}"),
            source,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| line_err(line, e.to_string()))?;
        let serde_json::Value::Object(mut object) = value else {
            return Err(line_err(line, "expected a JSON object".into()));
        };
        if header.is_none() {
            if object.contains_key("type") || !object.contains_key("format") {
                return Err(line_err(
                    line,
                    format!(
                        "missing header: the first line must be \
                         {{\"format\":\"{FORMAT_NAME}\",\"version\":{FORMAT_VERSION},...}}"
                    ),
                ));
            }
            let h = TraceHeader::deserialize(serde_json::Value::Object(object))
                .map_err(|e| line_err(line, format!("header: {e}")))?;
            check_header(&h).map_err(|m| line_err(line, m))?;
            header = Some(h);
            continue;
        }
        let t = match object.remove("t") {
            None => return Err(line_err(line, "missing field `t`".into())),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| line_err(line, format!("field `t`: expected seconds, got {v}")))?,
        };
        let mut event = Event::deserialize(serde_json::Value::Object(object))
            .map_err(|e| line_err(line, e.to_string()))?;
        check_event(&event).map_err(|m| line_err(line, format!("{}: {m}", event.kind())))?;
        check_time(t, events.last().map(|e| e.t)).map_err(|m| line_err(line, m))?;
        quantize_event(&mut event);
        events.push(TimedEvent {
            t: quantize(t),
            event,
        });
    }
    let Some(header) = header else {
        return Err(line_err(1, "empty trace: missing header line".into()));
    };
    Ok(Trace { header, events })
}

/// Writes `trace` as JSON Lines after validating it.
pub fn write_jsonl<W: Write>(trace: &Trace, mut w: W) -> Result<(), TraceError> {
    validate_trace(trace)?;
    let io = |source: std::io::Error| TraceError::Io {
        file: "<trace output>".into(),
        source,
    };
    let json = |e: serde_json::Error| TraceError::Io {
        file: "<trace output>".into(),
        source: e.into(),
    };
    serde_json::to_writer(&mut w, &trace.header).map_err(json)?;
    w.write_all(b"\n").map_err(io)?;
    for e in &trace.events {
        serde_json::to_writer(&mut w, e).map_err(json)?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)
}

/// The load-time checks, for a trace built in memory.
pub fn validate_trace(trace: &Trace) -> Result<(), TraceError> {
    check_header(&trace.header).map_err(|message| TraceError::Field {
        object: "trace".into(),
        field: "header".into(),
        message,
    })?;
    let mut prev = None;
    for (index, e) in trace.events.iter().enumerate() {
        let err = |message: String| TraceError::Event {
            index,
            t: e.t,
            message,
        };
        check_time(e.t, prev).map_err(err)?;
        check_event(&e.event).map_err(|m| err(format!("{}: {m}", e.event.kind())))?;
        prev = Some(e.t);
    }
    Ok(())
}

fn check_header(h: &TraceHeader) -> Result<(), String> {
    if h.format != FORMAT_NAME {
        return Err(format!(
            "header: format is {:?}, expected {FORMAT_NAME:?}",
            h.format
        ));
    }
    if h.version != FORMAT_VERSION {
        return Err(format!(
            "header: unsupported version {}, this build reads version {FORMAT_VERSION}",
            h.version
        ));
    }
    Ok(())
}

fn check_time(t: f64, prev: Option<f64>) -> Result<(), String> {
    if !t.is_finite() || t < 0.0 {
        return Err(format!("field `t`: time {t} must be finite and >= 0"));
    }
    if let Some(p) = prev {
        if t < p {
            return Err(format!(
                "field `t`: time {t} is before the previous event's time {p}; events must be time-ordered"
            ));
        }
    }
    Ok(())
}

fn check_seconds(field: &str, v: f64) -> Result<(), String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("field `{field}`: {v} must be finite and >= 0"));
    }
    Ok(())
}

fn check_name(field: &str, v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("field `{field}` is empty"));
    }
    Ok(())
}

fn check_resources(field: &str, list: &ResourceList) -> Result<(), String> {
    for (name, q) in list {
        let parsed = Quantity::parse(q).map_err(|e| format!("field `{field}.{name}`: {e}"))?;
        if parsed.is_negative() {
            return Err(format!("field `{field}.{name}`: negative quantity {q:?}"));
        }
    }
    Ok(())
}

fn check_event(event: &Event) -> Result<(), String> {
    match event {
        Event::NodeAdd(n) => {
            check_name("name", &n.name)?;
            check_resources("allocatable", &n.allocatable)?;
            if let Some(p) = n.price_per_hour {
                check_seconds("price_per_hour", p)?;
            }
            if let Some(g) = &n.gpu {
                if g.count as usize > crate::model::gpu::MAX_CARDS {
                    return Err(format!(
                        "field `gpu.count`: {} cards, at most {} per node",
                        g.count,
                        crate::model::gpu::MAX_CARDS
                    ));
                }
            }
        }
        Event::NodeRemove(n) => check_name("name", &n.name)?,
        Event::SpotInterruption(s) => {
            check_name("node", &s.node)?;
            check_seconds("notice_seconds", s.notice_seconds)?;
        }
        Event::SpotInterruptionRate(r) => {
            check_seconds("per_month", r.per_month)?;
            for (i, t) in r.instance_types.iter().enumerate() {
                check_name(&format!("instance_types[{i}]"), t)?;
            }
        }
        Event::AppSubmit(a) => {
            check_name("id", &a.id)?;
            check_name("namespace", &a.namespace)?;
            check_resources("driver.requests", &a.driver.requests)?;
            check_resources("executor.requests", &a.executor.requests)?;
            match (a.executors, a.dynamic) {
                (Some(_), Some(_)) => {
                    return Err("give either `executors` or `dynamic`, not both".into())
                }
                (None, None) => return Err("missing `executors` (or `dynamic`)".into()),
                (None, Some(d)) if d.min > d.max => {
                    return Err(format!(
                        "field `dynamic`: min {} is greater than max {}",
                        d.min, d.max
                    ))
                }
                _ => {}
            }
            check_seconds("work_executor_seconds", a.work_executor_seconds)?;
            if let Some(c) = &a.executor_claim {
                check_name("executor_claim.storage_class", &c.storage_class)?;
                c.request_bytes(&a.id).map_err(field_message)?;
            }
        }
        Event::PodSubmit(p) => {
            check_name("name", &p.name)?;
            check_name("namespace", &p.namespace)?;
            check_resources("requests", &p.requests)?;
            if let Some(d) = p.duration_seconds {
                check_seconds("duration_seconds", d)?;
            }
            for (i, r) in p.required_node_affinity.iter().enumerate() {
                r.to_requirement()
                    .map_err(|m| format!("field `required_node_affinity[{i}]`: {m}"))?;
            }
            if let Some(g) = &p.gpu {
                g.to_model()?;
            }
            for (i, c) in p.claims.iter().enumerate() {
                check_name(&format!("claims[{i}]"), c)?;
            }
        }
        Event::StorageClass(c) => {
            check_name("name", &c.name)?;
            check_name("provisioner", &c.provisioner)?;
        }
        Event::VolumeAdd(v) => {
            check_name("name", &v.name)?;
            v.to_volume().map_err(field_message)?;
        }
        Event::ClaimAdd(c) => {
            check_name("name", &c.name)?;
            check_name("namespace", &c.namespace)?;
            c.to_claim().map_err(field_message)?;
        }
    }
    Ok(())
}

/// A conversion error as the message of a line error (the line names the event).
fn field_message(e: TraceError) -> String {
    match e {
        TraceError::Field { field, message, .. } => format!("field `{field}`: {message}"),
        other => other.to_string(),
    }
}

fn quantize_event(event: &mut Event) {
    match event {
        Event::NodeAdd(n) => n.price_per_hour = n.price_per_hour.map(quantize),
        Event::NodeRemove(_) => {}
        Event::SpotInterruption(s) => s.notice_seconds = quantize(s.notice_seconds),
        Event::SpotInterruptionRate(r) => r.per_month = quantize(r.per_month),
        Event::AppSubmit(a) => a.work_executor_seconds = quantize(a.work_executor_seconds),
        Event::PodSubmit(p) => p.duration_seconds = p.duration_seconds.map(quantize),
        Event::StorageClass(_) | Event::VolumeAdd(_) | Event::ClaimAdd(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"format":"spark-fleet-trace","version":1,"name":"t"}"#;

    fn parse(body: &str) -> Result<Trace, TraceError> {
        parse_jsonl(format!("{HEADER}\n{body}").as_bytes(), "traces/x.jsonl")
    }

    fn line_error(body: &str) -> (usize, String) {
        match parse(body) {
            Err(TraceError::Line {
                file,
                line,
                message,
            }) => {
                assert_eq!(file, "traces/x.jsonl");
                (line, message)
            }
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_applied() {
        let t = parse(concat!(
            r#"{"t":0,"type":"spot_interruption","node":"n1"}"#,
            "\n",
            r#"{"t":1,"type":"pod_submit","name":"p","requests":{"cpu":"1"}}"#,
            "\n",
        ))
        .unwrap();
        let Event::SpotInterruption(s) = &t.events[0].event else {
            panic!()
        };
        assert_eq!(s.notice_seconds, 120.0);
        let Event::PodSubmit(p) = &t.events[1].event else {
            panic!()
        };
        assert_eq!(p.namespace, "default");
        assert_eq!(p.scheduler_name, "spark-fleet");
        assert_eq!(p.priority, 0);
        assert_eq!(p.duration_seconds, None);
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let (line, msg) = line_error(concat!(
            r#"{"t":0,"type":"node_remove","name":"a"}"#,
            "\n",
            r#"{"t":1,"type":"pod_submit","name":"p","requests":{},"cpus":"1"}"#,
        ));
        assert_eq!(line, 3);
        assert!(msg.contains("unknown field `cpus`"), "{msg}");
    }

    #[test]
    fn unknown_event_type() {
        let (line, msg) = line_error(r#"{"t":0,"type":"node_explode","name":"a"}"#);
        assert_eq!(line, 2);
        assert!(msg.contains("unknown variant `node_explode`"), "{msg}");
    }

    #[test]
    fn out_of_order_and_negative_times() {
        let (line, msg) = line_error(concat!(
            r#"{"t":5,"type":"node_remove","name":"a"}"#,
            "\n\n",
            r#"{"t":4,"type":"node_remove","name":"b"}"#,
        ));
        assert_eq!(line, 4, "blank lines still count");
        assert!(msg.contains("before the previous"), "{msg}");
        let (line, msg) = line_error(r#"{"t":-1,"type":"node_remove","name":"a"}"#);
        assert_eq!(line, 2);
        assert!(msg.contains(">= 0"), "{msg}");
        let (_, msg) = line_error(r#"{"type":"node_remove","name":"a"}"#);
        assert!(msg.contains("`t`"), "{msg}");
        let (_, msg) = line_error(r#"{"t":"soon","type":"node_remove","name":"a"}"#);
        assert!(msg.contains("`t`"), "{msg}");
    }

    #[test]
    fn bad_quantity_names_field() {
        let (line, msg) = line_error(
            r#"{"t":0,"type":"node_add","name":"n","allocatable":{"cpu":"16","memory":"lots"}}"#,
        );
        assert_eq!(line, 2);
        assert!(msg.contains("allocatable.memory"), "{msg}");
        assert!(msg.contains("lots"), "{msg}");
        let (_, msg) = line_error(
            r#"{"t":0,"type":"app_submit","id":"a","driver":{"requests":{"cpu":"1"}},"executor":{"requests":{"cpu":"-2"}},"executors":2,"work_executor_seconds":10}"#,
        );
        assert!(msg.contains("executor.requests.cpu"), "{msg}");
    }

    #[test]
    fn missing_and_wrong_header() {
        let e = parse_jsonl(
            r#"{"t":0,"type":"node_remove","name":"a"}"#.as_bytes(),
            "f.jsonl",
        )
        .unwrap_err();
        assert!(
            matches!(&e, TraceError::Line { line: 1, message, .. } if message.contains("missing header")),
            "{e}"
        );
        let e = parse_jsonl(r#"{"format":"other","version":1}"#.as_bytes(), "f.jsonl").unwrap_err();
        assert!(e.to_string().contains("\"other\""), "{e}");
        let e = parse_jsonl(
            r#"{"format":"spark-fleet-trace","version":2}"#.as_bytes(),
            "f.jsonl",
        )
        .unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        let e = parse_jsonl("".as_bytes(), "f.jsonl").unwrap_err();
        assert!(e.to_string().contains("missing header"), "{e}");
    }

    #[test]
    fn app_needs_exactly_one_executor_form() {
        let base = r#""t":0,"type":"app_submit","id":"a","driver":{"requests":{}},"executor":{"requests":{}},"work_executor_seconds":1"#;
        let (_, msg) = line_error(&format!("{{{base}}}"));
        assert!(msg.contains("missing `executors`"), "{msg}");
        let (_, msg) = line_error(&format!(
            r#"{{{base},"executors":2,"dynamic":{{"min":1,"max":3}}}}"#
        ));
        assert!(msg.contains("not both"), "{msg}");
        let (_, msg) = line_error(&format!(r#"{{{base},"dynamic":{{"min":4,"max":3}}}}"#));
        assert!(msg.contains("min 4"), "{msg}");
        assert!(parse(&format!(r#"{{{base},"dynamic":{{"min":1,"max":3}}}}"#)).is_ok());
    }

    #[test]
    fn bad_affinity_and_effect() {
        let (_, msg) = line_error(
            r#"{"t":0,"type":"pod_submit","name":"p","requests":{},"required_node_affinity":[{"key":"k","operator":"In"}]}"#,
        );
        assert!(msg.contains("required_node_affinity[0]"), "{msg}");
        let (_, msg) = line_error(
            r#"{"t":0,"type":"node_add","name":"n","allocatable":{},"taints":[{"key":"k","effect":"Sometimes"}]}"#,
        );
        assert!(msg.contains("Sometimes"), "{msg}");
    }

    #[test]
    fn storage_events_parse_and_round_trip() {
        let t = parse(concat!(
            r#"{"t":0,"type":"storage_class","name":"gp3","provisioner":"ebs.csi.aws.com","allowed_zones":["zone-a"]}"#,
            "\n",
            r#"{"t":0,"type":"volume_add","name":"pv-1","storage_class":"gp3","capacity":"100Gi","zone":"zone-a"}"#,
            "\n",
            r#"{"t":0,"type":"claim_add","name":"data","storage_class":"gp3","request":"100Gi","volume":"pv-1"}"#,
            "\n",
            r#"{"t":1,"type":"pod_submit","name":"p","requests":{"cpu":"1"},"claims":["data"]}"#,
            "\n",
            r#"{"t":1,"type":"node_add","name":"n","allocatable":{"cpu":"4"},"volume_limits":{"ebs.csi.aws.com":25}}"#,
        ))
        .unwrap();
        let Event::StorageClass(c) = &t.events[0].event else {
            panic!()
        };
        assert_eq!(
            c.binding_mode,
            super::super::VolumeBindingMode::WaitForFirstConsumer
        );
        let Event::VolumeAdd(v) = &t.events[1].event else {
            panic!()
        };
        assert_eq!(v.to_volume().unwrap().capacity, 100 << 30);
        let mut out = Vec::new();
        write_jsonl(&t, &mut out).unwrap();
        assert_eq!(parse_jsonl(out.as_slice(), "again").unwrap(), t);
    }

    #[test]
    fn bad_storage_fields_name_line_and_field() {
        let (line, msg) =
            line_error(r#"{"t":0,"type":"volume_add","name":"pv","capacity":"huge"}"#);
        assert_eq!(line, 2);
        assert!(msg.contains("volume_add: field `capacity`"), "{msg}");
        let (_, msg) = line_error(r#"{"t":0,"type":"claim_add","name":"c","request":"-1Gi"}"#);
        assert!(msg.contains("field `request`: negative quantity"), "{msg}");
        let (_, msg) = line_error(
            r#"{"t":0,"type":"storage_class","name":"gp3","provisioner":"x","binding_mode":"Later"}"#,
        );
        assert!(msg.contains("unknown variant `Later`"), "{msg}");
    }

    #[test]
    fn times_are_quantized_to_microseconds() {
        let t = parse(r#"{"t":1.00000049,"type":"node_remove","name":"a"}"#).unwrap();
        assert_eq!(t.events[0].t, 1.0);
    }
}

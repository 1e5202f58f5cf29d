//! Parsing of the `spark-fleet.io/*` annotations. Bad values are errors that the
//! scheduler reports on the pod (event + PodScheduled=False); never ignored.

use thiserror::Error;

pub const EXECUTOR_CAPACITY_MIX: &str = "spark-fleet.io/executor-capacity-mix";
pub const CAPACITY_MIX_MODE: &str = "spark-fleet.io/capacity-mix-mode";
pub const DRIVER_CAPACITY: &str = "spark-fleet.io/driver-capacity";
pub const MIN_EXECUTORS: &str = "spark-fleet.io/min-executors";
/// Size of one executor, on the driver, for driver admission: `cpu=2,memory=8Gi`.
pub const EXECUTOR_RESOURCES: &str = "spark-fleet.io/executor-resources";
/// Set by the admission webhook on an executor: the capacity type the mix chose
/// for it when it was created, which the scheduler then places it on.
pub const CAPACITY_TYPE: &str = "spark-fleet.io/capacity-type";
/// Set with [`CAPACITY_TYPE`]: why that type (the mix and the counts behind it).
pub const CAPACITY_TYPE_REASON: &str = "spark-fleet.io/capacity-type-reason";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AnnotationError {
    #[error(
        "{value:?} is not a capacity mix: expected type=weight pairs like \"spot=40,on-demand=60\""
    )]
    Syntax { value: String },
    #[error("unknown capacity type {ty:?} (known: {known})")]
    UnknownType { ty: String, known: String },
    #[error("capacity type {ty:?} is listed twice")]
    Duplicate { ty: String },
    #[error("weights add up to zero")]
    ZeroTotal,
    #[error("{value:?} is not soft or hard")]
    Mode { value: String },
    #[error("{value:?} is not a non-negative integer")]
    Count { value: String },
    #[error("{value:?} is not a resource list like \"cpu=2,memory=8Gi\": {why}")]
    Resources { value: String, why: String },
}

/// `spot=40,on-demand=60` → [("spot", 40), ("on-demand", 60)] in the order written.
pub fn parse_mix(value: &str, known: &[&str]) -> Result<Vec<(String, u32)>, AnnotationError> {
    let syntax = || AnnotationError::Syntax {
        value: value.to_owned(),
    };
    let mut out: Vec<(String, u32)> = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        let (ty, w) = part.split_once('=').ok_or_else(syntax)?;
        let (ty, w) = (ty.trim(), w.trim());
        if ty.is_empty() {
            return Err(syntax());
        }
        let weight: u32 = w.parse().map_err(|_| syntax())?;
        check_type(ty, known)?;
        if out.iter().any(|(t, _)| t == ty) {
            return Err(AnnotationError::Duplicate { ty: ty.to_owned() });
        }
        out.push((ty.to_owned(), weight));
    }
    if out.iter().map(|(_, w)| *w as u64).sum::<u64>() == 0 {
        return Err(AnnotationError::ZeroTotal);
    }
    Ok(out)
}

/// `on-demand`, `spot,on-demand` or `any` (None = any type).
pub fn parse_driver_capacity(
    value: &str,
    known: &[&str],
) -> Result<Option<Vec<String>>, AnnotationError> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("any") {
        return Ok(None);
    }
    let mut out = Vec::new();
    for ty in v.split(',').map(str::trim) {
        if ty.is_empty() {
            return Err(AnnotationError::Syntax {
                value: value.to_owned(),
            });
        }
        check_type(ty, known)?;
        if !out.iter().any(|t| t == ty) {
            out.push(ty.to_owned());
        }
    }
    Ok(Some(out))
}

pub fn parse_mode(value: &str) -> Result<crate::config::MixMode, AnnotationError> {
    match value.trim() {
        "soft" => Ok(crate::config::MixMode::Soft),
        "hard" => Ok(crate::config::MixMode::Hard),
        _ => Err(AnnotationError::Mode {
            value: value.to_owned(),
        }),
    }
}

pub fn parse_count(value: &str) -> Result<u32, AnnotationError> {
    value.trim().parse().map_err(|_| AnnotationError::Count {
        value: value.to_owned(),
    })
}

/// `cpu=2,memory=8Gi[,ephemeral-storage=..,nvidia.com/gpu=1]` → requests.
/// Resources not listed are zero: the annotation states the whole executor shape.
pub fn parse_resources(value: &str) -> Result<crate::model::Resources, AnnotationError> {
    use crate::model::{Quantity, Resources, Sym};
    let bad = |why: String| AnnotationError::Resources {
        value: value.to_owned(),
        why,
    };
    let mut out = Resources::default();
    let mut seen: Vec<&str> = Vec::new();
    for part in value.split(',') {
        let (name, q) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{:?} is not name=quantity", part.trim())))?;
        let (name, q) = (name.trim(), q.trim());
        if name.is_empty() {
            return Err(bad(format!("{:?} has no resource name", part.trim())));
        }
        if seen.contains(&name) {
            return Err(bad(format!("{name} is listed twice")));
        }
        seen.push(name);
        let q = Quantity::parse(q).map_err(|e| bad(e.to_string()))?;
        if q.is_negative() {
            return Err(bad(format!("{name} is negative")));
        }
        match name {
            "cpu" => out.milli_cpu = q.milli_value(),
            "memory" => out.memory = q.value(),
            "ephemeral-storage" => out.ephemeral_storage = q.value(),
            "pods" => return Err(bad("pods is not a container resource".into())),
            other => out.set_scalar(Sym::new(other), q.value()),
        }
    }
    Ok(out)
}

/// One capacity type, e.g. `spot`.
pub fn parse_capacity_type(value: &str, known: &[&str]) -> Result<String, AnnotationError> {
    let ty = value.trim();
    check_type(ty, known)?;
    Ok(ty.to_owned())
}

fn check_type(ty: &str, known: &[&str]) -> Result<(), AnnotationError> {
    if known.contains(&ty) {
        Ok(())
    } else {
        Err(AnnotationError::UnknownType {
            ty: ty.to_owned(),
            known: known.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["spot", "on-demand", "serverless"];

    #[test]
    fn mix_table() {
        assert_eq!(
            parse_mix("spot=40,on-demand=60", KNOWN).unwrap(),
            vec![("spot".to_string(), 40), ("on-demand".to_string(), 60)]
        );
        assert_eq!(
            parse_mix(" spot = 1 ", KNOWN).unwrap(),
            vec![("spot".to_string(), 1)]
        );
        assert_eq!(
            parse_mix("spot=0,on-demand=0", KNOWN),
            Err(AnnotationError::ZeroTotal)
        );
        assert!(matches!(
            parse_mix("gpu=1", KNOWN),
            Err(AnnotationError::UnknownType { .. })
        ));
        assert!(matches!(
            parse_mix("spot=1,spot=2", KNOWN),
            Err(AnnotationError::Duplicate { .. })
        ));
        for bad in [
            "",
            "spot",
            "spot=-1",
            "spot=x",
            "=4",
            "spot=40;on-demand=60",
            "spot=1.5",
        ] {
            assert!(
                matches!(parse_mix(bad, KNOWN), Err(AnnotationError::Syntax { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn driver_capacity_table() {
        assert_eq!(parse_driver_capacity("any", KNOWN).unwrap(), None);
        assert_eq!(
            parse_driver_capacity("on-demand", KNOWN).unwrap(),
            Some(vec!["on-demand".to_string()])
        );
        assert_eq!(
            parse_driver_capacity("on-demand, spot", KNOWN).unwrap(),
            Some(vec!["on-demand".to_string(), "spot".to_string()])
        );
        assert!(parse_driver_capacity("cheap", KNOWN).is_err());
        assert!(parse_driver_capacity("", KNOWN).is_err());
    }

    #[test]
    fn resources_table() {
        let r = parse_resources("cpu=2,memory=8Gi").unwrap();
        assert_eq!((r.milli_cpu, r.memory), (2000, 8 << 30));
        let r = parse_resources(" cpu = 500m , nvidia.com/gpu=1 ").unwrap();
        assert_eq!(r.milli_cpu, 500);
        assert_eq!(r.memory, 0);
        assert_eq!(r.scalar(crate::model::Sym::new("nvidia.com/gpu")), 1);
        for bad in [
            "",
            "cpu",
            "cpu=two",
            "=1",
            "cpu=1,cpu=2",
            "cpu=-1",
            "pods=3",
        ] {
            assert!(
                matches!(parse_resources(bad), Err(AnnotationError::Resources { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mode_and_count() {
        assert_eq!(parse_mode("hard").unwrap(), crate::config::MixMode::Hard);
        assert!(parse_mode("strict").is_err());
        assert_eq!(parse_count("3").unwrap(), 3);
        assert!(parse_count("-1").is_err());
    }
}

//! Spark identity of a pod: its role and the application it belongs to.

use super::{Labels, OwnerRef, Sym};
use serde::Serialize;

pub const LABEL_SPARK_ROLE: &str = "spark-role";
pub const LABEL_SPARK_APP: &str = "spark-app-selector";
/// Set by Spark on executors it is decommissioning (dynamic allocation).
pub const LABEL_SPARK_EXEC_INACTIVE: &str = "spark-exec-inactive";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SparkRole {
    Driver,
    Executor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SparkIdentity {
    pub role: SparkRole,
    /// The application: the `spark-app-selector` value, or the driver's uid
    /// (`uid:<uid>`) when only an ownerReference ties executors to their driver.
    pub app: Sym,
}

/// Reads the Spark role and application; pods without a role label are not Spark pods.
pub fn identify(labels: &Labels, uid: &str, owner: Option<&OwnerRef>) -> Option<SparkIdentity> {
    identify_with(labels, uid, owner, Sym::new)
}

/// As [`identify`], interning the `uid:` form of the application with `intern`
/// (the converter holds it for the pod's life: a driver's uid is new every time).
/// Reads symbols, not text, so that no per-application value gets pinned.
pub fn identify_with(
    labels: &Labels,
    uid: &str,
    owner: Option<&OwnerRef>,
    intern: impl FnOnce(&str) -> Sym,
) -> Option<SparkIdentity> {
    let role = labels.get(Sym::new(LABEL_SPARK_ROLE))?;
    let role = if role == Sym::new("driver") {
        SparkRole::Driver
    } else if role == Sym::new("executor") {
        SparkRole::Executor
    } else {
        return None;
    };
    if let Some(app) = labels.get(Sym::new(LABEL_SPARK_APP)) {
        return Some(SparkIdentity { role, app });
    }
    let app_uid = match role {
        SparkRole::Driver => uid,
        SparkRole::Executor => {
            let owner = owner.filter(|o| o.controller && o.kind == "Pod")?;
            owner.uid.as_str()
        }
    };
    if app_uid.is_empty() {
        return None;
    }
    Some(SparkIdentity {
        role,
        app: intern(&format!("uid:{app_uid}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_identity() {
        let l = Labels::from_pairs([
            (LABEL_SPARK_ROLE, "executor"),
            (LABEL_SPARK_APP, "spark-123"),
        ]);
        let id = identify(&l, "u1", None).unwrap();
        assert_eq!(id.role, SparkRole::Executor);
        assert_eq!(id.app.as_str(), "spark-123");
    }

    #[test]
    fn owner_fallback_groups_executor_with_driver() {
        let driver = identify(
            &Labels::from_pairs([(LABEL_SPARK_ROLE, "driver")]),
            "d-uid",
            None,
        )
        .unwrap();
        let owner = OwnerRef {
            kind: "Pod".into(),
            name: "drv".into(),
            uid: "d-uid".into(),
            controller: true,
        };
        let exec = identify(
            &Labels::from_pairs([(LABEL_SPARK_ROLE, "executor")]),
            "e-uid",
            Some(&owner),
        )
        .unwrap();
        assert_eq!(driver.app, exec.app);
    }

    #[test]
    fn non_spark_pods() {
        assert!(identify(&Labels::default(), "u", None).is_none());
        assert!(identify(
            &Labels::from_pairs([(LABEL_SPARK_ROLE, "shuffle")]),
            "u",
            None
        )
        .is_none());
        // An executor with neither label nor owner has no application.
        assert!(identify(
            &Labels::from_pairs([(LABEL_SPARK_ROLE, "executor")]),
            "u",
            None
        )
        .is_none());
    }
}

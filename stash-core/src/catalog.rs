//! The default catalog: Stash's MySQL Tasks and Functions and the `update-status` Function,
//! as data, pointing at our image. Argument lists are Stash's (stash.md §3.1).

use crate::api::Function;
use crate::api::{FunctionRef, FunctionSpec, Param, Task, TaskSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// MySQL versions for which Stash ships Tasks and Functions.
pub const MYSQL_VERSIONS: [&str; 4] = ["5.7.25", "8.0.3", "8.0.14", "8.0.21"];

const REPO_ARGS: [&str; 8] = [
    "--provider=${REPOSITORY_PROVIDER:=}",
    "--bucket=${REPOSITORY_BUCKET:=}",
    "--endpoint=${REPOSITORY_ENDPOINT:=}",
    "--insecure-tls=${REPOSITORY_INSECURE_TLS:=}",
    "--region=${REPOSITORY_REGION:=}",
    "--path=${REPOSITORY_PREFIX:=}",
    "--storage-secret-name=${REPOSITORY_SECRET_NAME:=}",
    "--storage-secret-namespace=${REPOSITORY_SECRET_NAMESPACE:=}",
];

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_string(),
                "stash-rs".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The `mysql-backup-<version>` Function.
pub fn mysql_backup_function(version: &str, image: &str) -> Function {
    let mut args = vec!["backup-mysql".to_string()];
    args.extend(strings(&REPO_ARGS));
    args.extend(strings(&[
        "--scratch-dir=/stash-tmp",
        "--enable-cache=${ENABLE_CACHE:=true}",
        "--max-connections=${MAX_CONNECTIONS:=0}",
        "--hostname=${HOSTNAME:=}",
        "--mysql-args=${args:=--all-databases}",
        "--multi-dump-args=${multiDumpArgs:=}",
        "--wait-timeout=${waitTimeout:=300}",
        "--namespace=${NAMESPACE:=default}",
        "--appbinding=${TARGET_NAME:=}",
        "--appbinding-namespace=${TARGET_NAMESPACE:=}",
        "--backupsession=${BACKUP_SESSION:=}",
        "--retention-keep-last=${RETENTION_KEEP_LAST:=0}",
        "--retention-keep-hourly=${RETENTION_KEEP_HOURLY:=0}",
        "--retention-keep-daily=${RETENTION_KEEP_DAILY:=0}",
        "--retention-keep-weekly=${RETENTION_KEEP_WEEKLY:=0}",
        "--retention-keep-monthly=${RETENTION_KEEP_MONTHLY:=0}",
        "--retention-keep-yearly=${RETENTION_KEEP_YEARLY:=0}",
        "--retention-keep-tags=${RETENTION_KEEP_TAGS:=}",
        "--retention-prune=${RETENTION_PRUNE:=false}",
        "--retention-dry-run=${RETENTION_DRY_RUN:=false}",
        "--output-dir=${outputDir:=}",
        "--license-apiservice=${LICENSE_APISERVICE:=}",
    ]));
    function(&format!("mysql-backup-{version}"), image, args)
}

/// The `mysql-restore-<version>` Function.
pub fn mysql_restore_function(version: &str, image: &str) -> Function {
    let mut args = vec!["restore-mysql".to_string()];
    args.extend(strings(&REPO_ARGS));
    args.extend(strings(&[
        "--scratch-dir=/stash-tmp",
        "--enable-cache=${ENABLE_CACHE:=true}",
        "--max-connections=${MAX_CONNECTIONS:=0}",
        "--hostname=${HOSTNAME:=}",
        "--source-hostname=${SOURCE_HOSTNAME:=}",
        "--mysql-args=${args:=}",
        "--wait-timeout=${waitTimeout:=300}",
        "--namespace=${NAMESPACE:=default}",
        "--appbinding=${TARGET_NAME:=}",
        "--appbinding-namespace=${TARGET_NAMESPACE:=}",
        "--snapshot=${RESTORE_SNAPSHOTS:=}",
        "--output-dir=${outputDir:=}",
        "--license-apiservice=${LICENSE_APISERVICE:=}",
    ]));
    function(&format!("mysql-restore-{version}"), image, args)
}

/// The `update-status` Function. Unlike Stash's, the storage secret variables have a default,
/// so repositories without a storage secret (IRSA) still resolve (stash.md §12).
pub fn update_status_function(image: &str) -> Function {
    let mut args = vec!["update-status".to_string()];
    args.extend(strings(&[
        "--provider=${REPOSITORY_PROVIDER:=}",
        "--bucket=${REPOSITORY_BUCKET:=}",
        "--endpoint=${REPOSITORY_ENDPOINT:=}",
        "--insecure-tls=${REPOSITORY_INSECURE_TLS:=}",
        "--region=${REPOSITORY_REGION:=}",
        "--path=${REPOSITORY_PREFIX:=}",
        "--enable-cache=${ENABLE_CACHE:=true}",
        "--max-connections=${MAX_CONNECTIONS:=0}",
        "--namespace=${NAMESPACE:=default}",
        "--backupsession=${BACKUP_SESSION:=}",
        "--restoresession=${RESTORE_SESSION:=}",
        "--storage-secret-name=${REPOSITORY_SECRET_NAME:=}",
        "--storage-secret-namespace=${REPOSITORY_SECRET_NAMESPACE:=}",
        "--invoker-kind=${INVOKER_KIND:=}",
        "--invoker-name=${INVOKER_NAME:=}",
        "--target-kind=${TARGET_KIND:=}",
        "--target-name=${TARGET_NAME:=}",
        "--target-namespace=${TARGET_NAMESPACE:=}",
        "--output-dir=${outputDir:=}",
        "--metrics-enabled=true",
        "--scratch-dir=/stash-tmp",
    ]));
    function("update-status", image, args)
}

fn function(name: &str, image: &str, args: Vec<String>) -> Function {
    Function {
        metadata: meta(name),
        spec: FunctionSpec {
            image: image.to_string(),
            args: Some(args),
            ..Default::default()
        },
    }
}

fn task(name: &str, first_step: &str) -> Task {
    let output_dir = || {
        Some(vec![Param {
            name: "outputDir".into(),
            value: "/stash-tmp/output".into(),
        }])
    };
    Task {
        metadata: meta(name),
        spec: TaskSpec {
            steps: Some(vec![
                FunctionRef {
                    name: first_step.to_string(),
                    params: output_dir(),
                },
                FunctionRef {
                    name: "update-status".into(),
                    params: output_dir(),
                },
            ]),
            volumes: None,
        },
    }
}

/// The `mysql-backup-<version>` Task: the backup step, then `update-status`.
pub fn mysql_backup_task(version: &str) -> Task {
    task(
        &format!("mysql-backup-{version}"),
        &format!("mysql-backup-{version}"),
    )
}

/// The `mysql-restore-<version>` Task: the restore step, then `update-status`.
pub fn mysql_restore_task(version: &str) -> Task {
    task(
        &format!("mysql-restore-{version}"),
        &format!("mysql-restore-{version}"),
    )
}

/// The whole default catalog for `image` (ours runs every step).
pub fn default_catalog(image: &str) -> (Vec<Task>, Vec<Function>) {
    let mut tasks = Vec::new();
    let mut functions = vec![update_status_function(image)];
    for v in MYSQL_VERSIONS {
        tasks.push(mysql_backup_task(v));
        tasks.push(mysql_restore_task(v));
        functions.push(mysql_backup_function(v, image));
        functions.push(mysql_restore_function(v, image));
    }
    (tasks, functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_step_has_a_function() {
        let (tasks, functions) = default_catalog("img");
        assert_eq!(tasks.len(), 8);
        for t in &tasks {
            for step in t.spec.steps.iter().flatten() {
                assert!(
                    functions
                        .iter()
                        .any(|f| f.metadata.name.as_deref() == Some(step.name.as_str())),
                    "missing function {}",
                    step.name
                );
            }
        }
    }
}

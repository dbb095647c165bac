//! The highly available set of `deploy/`: `compose.ha.yml` with the Alertmanager configuration
//! (`deploy/ha/alertmanager.yml`) and the remediator configuration (`deploy/ha/remediator.yml`)
//! it mounts.
//!
//! - The contract check (the real binary) holds on the set with the shipped core rules, and on
//!   its other form (one receiver per replica through `continue: true`); each broken variant
//!   (one edit that Alertmanager itself accepts: `amtool check-config` passes on it) is a
//!   finding naming the webhook or the route and exits 1.
//! - `amtool check-config` accepts the Alertmanager configuration, and `docker-compose config`
//!   (v1, what scripts/test.sh installs) the Compose file.
//! - The Compose file agrees with the files it mounts: the replicas listen where Alertmanager
//!   sends, each Alertmanager peers with the other, the remediators escalate to both, the
//!   token and the PostgreSQL password come from the secrets the services get, and the secret
//!   files in the repository are empty placeholders (which the remediator refuses).
//! - Against real peers: a real cluster of two Alertmanagers loaded with `deploy/ha/
//!   alertmanager.yml` and two real remediators loaded with `deploy/ha/remediator.yml` (only
//!   the documented values changed: addresses and the token file): an alert posted to one
//!   Alertmanager reaches both replicas with the token, and after one replica is killed the
//!   other still receives what either Alertmanager sends. Each remediator has its own store
//!   here (its SQLite file), which this test does not look at: what it checks is the delivery
//!   the files set up.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use stackmedic_tests::alerting::{read_repo_file, repo_root};
use stackmedic_tests::alertmanager::{amtool, Alertmanager};
use stackmedic_tests::docker::ensure_docker;
use stackmedic_tests::remediator::Remediator;
use stackmedic_tests::{bin_path, require_program, wait_until};

const COMPOSE: &str = "deploy/compose.ha.yml";
const ALERTMANAGER: &str = "deploy/ha/alertmanager.yml";
const REMEDIATOR: &str = "deploy/ha/remediator.yml";
/// The core rules, whose remediable alerts the set's rule (the embedded default's) covers.
const RULES: &str = "alerts/stackmedic.rules.yml";
/// Where the services find the webhook token, as both configurations name it.
const TOKEN_PATH: &str = "/run/secrets/stackmedic-webhook-token";
/// The replicas' webhooks in `deploy/ha/alertmanager.yml`.
const REPLICA_A: &str = "http://127.0.0.1:8791/webhook";
const REPLICA_B: &str = "http://127.0.0.1:8792/webhook";
/// The Alertmanagers in `deploy/ha/remediator.yml`.
const ESCALATION_URLS: &str = "[http://127.0.0.1:9093, http://127.0.0.1:9193]";

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"))
}

/// `text` with `from` replaced by `to` once; `from` must be there.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the file no longer contains {from:?}");
    text.replacen(from, to, 1)
}

/// `deploy/ha/alertmanager.yml` in its other form: one receiver per replica, the first route
/// going on (`continue`, as given) to the second.
fn receiver_per_replica(continues: bool) -> String {
    let text = read_repo_file(ALERTMANAGER);
    let text = edit(
        &text,
        "    - receiver: stackmedic-remediator\n      matchers: ['remediation=~\".+\"']\n",
        &format!(
            "    - receiver: stackmedic-remediator-a\n      matchers: ['remediation=~\".+\"']\n      \
             continue: {continues}\n      group_by: ['...']\n      group_wait: 0s\n      \
             group_interval: 1s\n      repeat_interval: 1h\n    \
             - receiver: stackmedic-remediator-b\n      matchers: ['remediation=~\".+\"']\n"
        ),
    );
    let text = edit(
        &text,
        "  - name: stackmedic-remediator\n",
        "  - name: stackmedic-remediator-a\n",
    );
    edit(
        &text,
        &format!("      - url: {REPLICA_B}\n"),
        &format!(
            "  - name: stackmedic-remediator-b\n    webhook_configs:\n      - url: {REPLICA_B}\n"
        ),
    )
}

/// The text of the second replica's webhook in `deploy/ha/alertmanager.yml`.
fn second_webhook() -> String {
    let text = read_repo_file(ALERTMANAGER);
    let start = text
        .find(&format!("      - url: {REPLICA_B}\n"))
        .expect("the second replica's webhook");
    let end = start + text[start..].find("\n\n").expect("the end of the receiver");
    text[start..end].to_owned()
}

/// `deploy/ha/alertmanager.yml` with the second replica's webhook edited.
fn second_webhook_edited(from: &str, to: &str) -> String {
    let hook = second_webhook();
    edit(&read_repo_file(ALERTMANAGER), &hook, &edit(&hook, from, to))
}

fn amtool_check(path: &Path) -> Output {
    Command::new(amtool())
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run amtool")
}

/// A copy of `deploy/ha/remediator.yml` in `dir` whose token file is `token` (the documented
/// value changed for a check outside the containers).
fn remediator_config_in(dir: &Path, token: &Path) -> std::path::PathBuf {
    let text = edit(
        &read_repo_file(REMEDIATOR),
        TOKEN_PATH,
        &token.display().to_string(),
    );
    let path = dir.join("remediator.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The contract check of the set in `root`, which holds the rules and Alertmanager's
/// configuration at their paths in the repository.
fn contract(root: &Path, remediator: &Path) -> Output {
    Command::new(bin_path("stackmedic-remediator"))
        .current_dir(root)
        .args(["--config.check", "--config.file"])
        .arg(remediator)
        .args([
            "--rules.file",
            RULES,
            "--alertmanager.config.file",
            ALERTMANAGER,
        ])
        .output()
        .expect("run stackmedic-remediator")
}

/// A folder with the core rules and `alertmanager` as `deploy/ha/alertmanager.yml`, checked by
/// amtool (which must accept it: what follows is the contract's own finding).
fn set_with(root: &Path, alertmanager: &str, what: &str) {
    std::fs::create_dir_all(root.join("alerts")).unwrap();
    std::fs::create_dir_all(root.join("deploy/ha")).unwrap();
    std::fs::write(root.join(RULES), read_repo_file(RULES)).unwrap();
    std::fs::write(root.join(ALERTMANAGER), alertmanager).unwrap();
    let check = amtool_check(&root.join(ALERTMANAGER));
    assert!(
        check.status.success(),
        "{what}: Alertmanager itself refuses it: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// One broken variant of the set's Alertmanager configuration, and its finding.
struct Broken {
    what: &'static str,
    config: fn() -> String,
    finding: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        what: "one receiver per replica without `continue`: the second never gets an alert",
        config: || receiver_per_replica(false),
        finding: "deploy/ha/alertmanager.yml: route: alert ContainerDown (alerts/stackmedic.rules.yml) reaches the remediator's replica http://127.0.0.1:8791/webhook (receivers[0].webhook_configs[0]) but not http://127.0.0.1:8792/webhook (receivers[1].webhook_configs[0]): it ends at stackmedic-remediator-a (route.routes[1]); while that replica is down, no replica receives it and nothing acts on it",
    },
    Broken {
        what: "one alert kept from the second replica",
        config: || {
            edit(
                &receiver_per_replica(true),
                "    - receiver: stackmedic-remediator-b\n      matchers: ['remediation=~\".+\"']\n",
                "    - receiver: stackmedic-remediator-b\n      matchers: ['remediation=~\".+\"', 'alertname!=\"ContainerMissing\"']\n",
            )
        },
        finding: "deploy/ha/alertmanager.yml: route: alert ContainerMissing (alerts/stackmedic.rules.yml) reaches the remediator's replica http://127.0.0.1:8791/webhook (receivers[0].webhook_configs[0]) but not http://127.0.0.1:8792/webhook (receivers[1].webhook_configs[0])",
    },
    Broken {
        what: "no resolves to the second replica",
        config: || second_webhook_edited("send_resolved: true", "send_resolved: false"),
        finding: "deploy/ha/alertmanager.yml: receivers[0].webhook_configs[1]: send_resolved is false, unlike receivers[0].webhook_configs[0] (to http://127.0.0.1:8791/webhook): the replica at http://127.0.0.1:8792/webhook is never sent a resolve",
    },
    Broken {
        what: "another token file for the second replica",
        config: || {
            second_webhook_edited(
                "credentials_file: /run/secrets/stackmedic-webhook-token",
                "credentials_file: /run/secrets/other-token",
            )
        },
        finding: "deploy/ha/alertmanager.yml: receivers[0].webhook_configs[1]: its credentials to http://127.0.0.1:8792/webhook (Bearer credentials from file /run/secrets/other-token) differ from those of receivers[0].webhook_configs[0] to http://127.0.0.1:8791/webhook (Bearer credentials from file /run/secrets/stackmedic-webhook-token)",
    },
    Broken {
        what: "no credentials for the second replica",
        config: || {
            second_webhook_edited(
                "\n        http_config:\n          authorization:\n            type: Bearer\n            credentials_file: /run/secrets/stackmedic-webhook-token",
                "",
            )
        },
        finding: "deploy/ha/alertmanager.yml: receivers[0].webhook_configs[1]: its credentials to http://127.0.0.1:8792/webhook (none) differ from those of receivers[0].webhook_configs[0]",
    },
    Broken {
        what: "a limit of alerts per notification to the second replica",
        config: || second_webhook_edited("max_alerts: 0", "max_alerts: 1"),
        finding: "deploy/ha/alertmanager.yml: receivers[0].webhook_configs[1]: max_alerts 1 drops alerts beyond it from a notification, alert ContainerDown (alerts/stackmedic.rules.yml) among them",
    },
];

#[test]
fn contract_holds_on_both_forms_and_each_broken_variant_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("webhook-token");
    std::fs::write(&token, "a-token-for-the-check\n").unwrap();
    let remediator = remediator_config_in(dir.path(), &token);

    let out = contract(&repo_root(), &remediator);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the HA set breaks the contract:\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains("contract holds: ") && stdout.contains(" 3 remediable"),
        "{stdout}"
    );

    // The other form: one receiver per replica, reached through `continue: true`.
    let root = tempfile::tempdir().unwrap();
    set_with(
        root.path(),
        &receiver_per_replica(true),
        "the receiver-per-replica form",
    );
    let out = contract(root.path(), &remediator);
    assert!(
        out.status.success(),
        "the receiver-per-replica form breaks the contract:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut failures = Vec::new();
    for case in BROKEN {
        let root = tempfile::tempdir().unwrap();
        set_with(root.path(), &(case.config)(), case.what);
        let out = contract(root.path(), &remediator);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(case.finding) {
            failures.push(format!(
                "{}: expected exit 1 and\n  {}\ngot {} and\n{stderr}",
                case.what, case.finding, out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn amtool_accepts_the_alertmanager_configuration() {
    let out = amtool_check(&repo_root().join(ALERTMANAGER));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The secret files in the repository are empty placeholders, and the remediator refuses an
/// empty token: a set started before the secrets are written stops at once, with the reason.
#[test]
fn secret_placeholders_are_empty_and_refused() {
    let compose = yaml(&read_repo_file(COMPOSE), COMPOSE);
    let secrets = compose["secrets"].as_object().expect("a secrets section");
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    for (name, secret) in secrets {
        let file = secret["file"].as_str().expect("a file secret");
        let default = file
            .strip_prefix("${STACKMEDIC_SECRETS_DIR:-./ha/secrets}/")
            .unwrap_or_else(|| panic!("{name}: {file} is not in STACKMEDIC_SECRETS_DIR"));
        let placeholder = repo_root().join("deploy/ha/secrets").join(default);
        let content = std::fs::read(&placeholder)
            .unwrap_or_else(|e| panic!("{}: {e}", placeholder.display()));
        assert!(
            content.is_empty(),
            "{} holds a secret: placeholders stay empty",
            placeholder.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let placeholder = repo_root().join("deploy/ha/secrets/webhook-token");
    let remediator = remediator_config_in(dir.path(), &placeholder);
    let out = Command::new(bin_path("stackmedic-remediator"))
        .args(["--config.check", "--config.file"])
        .arg(&remediator)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an empty token is accepted: {stderr}"
    );
    assert!(stderr.contains("secret is empty"), "{stderr}");
}

/// The values of `--name=value` in a service's `command`.
fn flag(service: &Value, name: &str) -> Vec<String> {
    let prefix = format!("--{name}=");
    service["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

fn one_flag(service: &Value, name: &str) -> String {
    let values = flag(service, name);
    assert_eq!(values.len(), 1, "--{name} of {service}");
    values[0].clone()
}

/// The secrets a service gets, by name.
fn secrets_of(service: &Value) -> BTreeSet<String> {
    service["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            s.as_str()
                .or_else(|| s["source"].as_str())
                .expect("a secret name")
                .to_owned()
        })
        .collect()
}

/// The secret that `/run/secrets/<name>` names, which `service` must get.
fn secret_at(path: &str, service_name: &str, service: &Value) -> String {
    let name = path
        .strip_prefix("/run/secrets/")
        .unwrap_or_else(|| panic!("{service_name}: {path} is not a Compose secret"));
    assert!(
        secrets_of(service).contains(name),
        "{service_name} reads {path} but does not get the secret {name}"
    );
    name.to_owned()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn compose_file_agrees_with_the_files_it_mounts() {
    let compose = yaml(&read_repo_file(COMPOSE), COMPOSE);
    let alertmanager = yaml(&read_repo_file(ALERTMANAGER), ALERTMANAGER);
    let remediator = yaml(&read_repo_file(REMEDIATOR), REMEDIATOR);
    let services = compose["services"].as_object().expect("services");
    let of_image = |prefix: &str| -> Vec<(&String, &Value)> {
        services
            .iter()
            .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with(prefix)))
            .collect()
    };
    let replicas = of_image("stackmedic-remediator:${STACKMEDIC_TAG:-latest}");
    let alertmanagers = of_image("prom/alertmanager:");
    let postgres = of_image("postgres:");
    assert_eq!(replicas.len(), 2, "two replicas");
    assert_eq!(alertmanagers.len(), 2, "two Alertmanagers");
    assert_eq!(postgres.len(), 1, "one PostgreSQL");
    for (name, service) in services {
        assert_eq!(service["network_mode"], "host", "{name}");
        assert_eq!(service["restart"], "unless-stopped", "{name}");
    }

    // The replicas listen exactly where Alertmanager sends the remediator's webhooks.
    let mut webhooks = BTreeSet::new();
    let mut token_files = BTreeSet::new();
    for receiver in alertmanager["receivers"].as_array().unwrap() {
        for hook in receiver["webhook_configs"].as_array().into_iter().flatten() {
            let url = hook["url"].as_str().unwrap();
            if let Some(rest) = url.strip_suffix("/webhook") {
                webhooks.insert(rest.strip_prefix("http://").unwrap().to_owned());
                token_files.insert(
                    hook["http_config"]["authorization"]["credentials_file"]
                        .as_str()
                        .expect("the webhook's token file")
                        .to_owned(),
                );
            }
        }
    }
    let listen: BTreeSet<String> = replicas
        .iter()
        .map(|(_, s)| {
            s["environment"]["STACKMEDIC_WEB_LISTEN_ADDRESS"]
                .as_str()
                .expect("the listen address")
                .to_owned()
        })
        .collect();
    assert_eq!(listen.len(), 2, "each replica its own address: {listen:?}");
    assert_eq!(
        listen, webhooks,
        "the replicas listen where Alertmanager sends"
    );
    assert!(
        listen.iter().all(|a| a.starts_with("127.0.0.1:")),
        "{listen:?}"
    );

    // Distinct names, one store: the PostgreSQL service's database, user and port, the
    // password from the secret PostgreSQL was given, never in the URL.
    let (_, pg) = postgres[0];
    let pg_command = strings(&pg["command"]);
    let setting = |key: &str| -> String {
        pg_command
            .iter()
            .find_map(|a| a.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("PostgreSQL's -c {key}: {pg_command:?}"))
            .to_owned()
    };
    let store = format!(
        "postgres://{}@{}:{}/{}",
        pg["environment"]["POSTGRES_USER"].as_str().unwrap(),
        setting("listen_addresses"),
        setting("port"),
        pg["environment"]["POSTGRES_DB"].as_str().unwrap(),
    );
    let pg_secret = secret_at(
        pg["environment"]["POSTGRES_PASSWORD_FILE"]
            .as_str()
            .unwrap(),
        "postgres",
        pg,
    );
    let names: BTreeSet<String> = replicas
        .iter()
        .map(|(_, s)| one_flag(s, "replica.name"))
        .collect();
    assert_eq!(names.len(), 2, "each replica its own name: {names:?}");
    let token = remediator["webhook"]["bearer_token_file"]
        .as_str()
        .expect("webhook.bearer_token_file");
    assert_eq!(
        token_files,
        BTreeSet::from([token.to_owned()]),
        "Alertmanager sends the token the replicas read"
    );
    let mut mounts = BTreeSet::new();
    for (name, service) in &replicas {
        assert_eq!(one_flag(service, "storage.url"), store, "{name}");
        let password = one_flag(service, "storage.password-file");
        assert_eq!(secret_at(&password, name, service), pg_secret, "{name}");
        secret_at(token, name, service);
        let config = one_flag(service, "config.file");
        let volumes = strings(&service["volumes"]);
        let mount = volumes
            .iter()
            .find(|v| v.contains(&format!(":{config}")))
            .unwrap_or_else(|| panic!("{name} does not mount {config}: {volumes:?}"));
        assert!(mount.ends_with(":ro"), "{name}: {mount}");
        mounts.insert(mount.clone());
        assert_eq!(service["read_only"], true, "{name}");
        assert!(
            service["depends_on"]["postgres"]["condition"] == "service_healthy",
            "{name} waits for PostgreSQL"
        );
    }
    assert_eq!(
        mounts,
        BTreeSet::from(["./ha/remediator.yml:/etc/stackmedic/remediator.yml:ro".to_owned()]),
        "one shared remediator configuration, the one of this test"
    );

    // Each Alertmanager peers with the other, loads deploy/ha/alertmanager.yml and reads the
    // token from its secret; the remediators escalate to both.
    let cluster: Vec<String> = alertmanagers
        .iter()
        .map(|(_, s)| one_flag(s, "cluster.listen-address"))
        .collect();
    assert_ne!(cluster[0], cluster[1]);
    let mut web = BTreeSet::new();
    for (i, (name, service)) in alertmanagers.iter().enumerate() {
        assert_eq!(
            flag(service, "cluster.peer"),
            [cluster[1 - i].clone()],
            "{name} peers with the other"
        );
        assert_eq!(
            one_flag(service, "cluster.advertise-address"),
            cluster[i],
            "{name}"
        );
        let config = one_flag(service, "config.file");
        let volumes = strings(&service["volumes"]);
        assert!(
            volumes.contains(&format!("./ha/alertmanager.yml:{config}:ro")),
            "{name}: {volumes:?}"
        );
        secret_at(token, name, service);
        web.insert(format!(
            "http://{}",
            one_flag(service, "web.listen-address")
        ));
    }
    assert_eq!(web.len(), 2);
    let escalation: BTreeSet<String> = strings(&remediator["escalation"]["alertmanager_urls"])
        .into_iter()
        .collect();
    assert_eq!(escalation, web, "escalations go to both Alertmanagers");
    for address in cluster.iter().chain(&web) {
        assert!(address.contains("127.0.0.1:"), "{address} is not loopback");
    }
}

/// `docker-compose <args>` on the file, with `env`.
fn compose(args: &[&str], env: &[(&str, &str)]) -> Output {
    let program = require_program(&["/usr/bin/docker-compose"], "docker-compose");
    let mut command = Command::new(program);
    command
        .args(["-f", COMPOSE])
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .env_remove("DOCKER_GID")
        .env_remove("STACKMEDIC_SECRETS_DIR");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run docker-compose")
}

#[test]
fn docker_compose_accepts_the_file_and_requires_the_socket_group() {
    let out = compose(&["config", "-q"], &[("DOCKER_GID", "4242")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The secrets from another folder, the documented way to keep them out of the checkout.
    let out = compose(
        &["config"],
        &[
            ("DOCKER_GID", "4242"),
            ("STACKMEDIC_SECRETS_DIR", "/etc/stackmedic/secrets"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("/etc/stackmedic/secrets/postgres-password")
            && text.contains("/etc/stackmedic/secrets/webhook-token"),
        "{text}"
    );
    let out = compose(&["config", "-q"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("set DOCKER_GID to the group id of /var/run/docker.sock"),
        "{stderr}"
    );
}

/// A remediable alert that no rule of the set matches (it names no container), so that a
/// replica only records it: `stackmedic_remediator_alerts_total{decision="unmatched"}`.
fn remediable_alert(instance: &str) -> Value {
    json!([{
        "labels": {
            "alertname": "ContainerDown",
            "remediation": "container_restart",
            "severity": "info",
            "instance": instance,
        },
        "annotations": {"summary": "a test alert of deploy_ha.rs"},
    }])
}

fn received(r: &Remediator) -> f64 {
    r.metric(
        "stackmedic_remediator_alerts_total",
        &[("decision", "unmatched")],
    )
}

#[test]
fn each_alertmanager_of_the_cluster_sends_to_both_replicas() {
    ensure_docker();
    let token = "deploy-ha-test-token";
    let start = || {
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-remediator-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("webhook-token"), format!("{token}\n")).unwrap();
        // Only the documented values change: the token file, and (below) the addresses.
        let config = edit(
            &read_repo_file(REMEDIATOR),
            TOKEN_PATH,
            "{dir}/webhook-token",
        );
        Remediator::start_in(dir, &config)
    };
    let mut replica_a = start();
    let replica_b = start();

    let am_dir = tempfile::tempdir().unwrap();
    let am_token = am_dir.path().join("webhook-token");
    std::fs::write(&am_token, format!("{token}\n")).unwrap();
    let config = read_repo_file(ALERTMANAGER);
    let config = edit(&config, REPLICA_A, &replica_a.url("/webhook"));
    let config = edit(&config, REPLICA_B, &replica_b.url("/webhook"));
    let config = config.replace(TOKEN_PATH, &am_token.display().to_string());
    let cluster = Alertmanager::start_cluster(&config, 2);

    // The replicas escalate to both members, as the shipped file says with its addresses.
    let escalate_to = format!("[{}, {}]", cluster[0].url(""), cluster[1].url(""));
    for replica in [&replica_a, &replica_b] {
        let config = edit(
            &read_repo_file(REMEDIATOR),
            TOKEN_PATH,
            "{dir}/webhook-token",
        );
        let reload = replica.reconfigure(&edit(&config, ESCALATION_URLS, &escalate_to));
        assert_eq!(reload.status, 200, "{}", reload.text());
    }

    // Posted to one member only: it sends to both replicas, with the token they accept.
    cluster[0]
        .post_alerts(&remediable_alert("deploy-ha-1"))
        .unwrap();
    let both = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        received(&replica_a) >= 1.0 && received(&replica_b) >= 1.0
    });
    assert!(
        both,
        "the alert did not reach both replicas: A {}, B {}",
        received(&replica_a),
        received(&replica_b)
    );
    for replica in [&replica_a, &replica_b] {
        assert_eq!(
            replica.metric(
                "stackmedic_remediator_webhooks_total",
                &[("result", "unauthorized")]
            ),
            0.0
        );
    }

    // One replica dies: what the other member is sent still reaches the living one.
    replica_a.kill9();
    cluster[1]
        .post_alerts(&remediable_alert("deploy-ha-2"))
        .unwrap();
    let living = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        received(&replica_b) >= 2.0
    });
    assert!(
        living,
        "the living replica did not receive the second alert: {}",
        received(&replica_b)
    );
}

//! Authentication the Prometheus ecosystem's way, on both binaries:
//!
//! * `POST /-/reload` answers 403 unless `--web.enable-lifecycle` is given (SIGHUP reloads
//!   either way), and with it needs the web configuration's basic auth when one is set;
//! * the remediator's webhook checks its own bearer token while the web configuration's basic
//!   auth (and TLS) protect its page, API and metrics: a real Alertmanager delivers over TLS
//!   with the token while `/`, `/api/actions` and `/metrics` ask for the basic auth user;
//! * without webhook credentials, the web configuration's basic auth protects the webhook too;
//! * a wrong user name takes as long as a wrong password (bcrypt runs for unknown users), also
//!   when the configured hashes have different costs (every rejection costs the highest).

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::exporter::{self, Exporter};
use stackmedic_tests::metrics;
use stackmedic_tests::remediator::{alert, payload, Flags, Remediator};
use stackmedic_tests::tls::make_certificates;
use stackmedic_tests::{http, wait_until};

const USER: &str = "oncall";
const PASSWORD: &str = "correct horse battery staple";
const TOKEN: &str = "am-webhook-token-7d1e";

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn web_config(cost: u32, tls_dir: Option<&std::path::Path>) -> String {
    let hash = bcrypt::hash(PASSWORD, cost).unwrap();
    let tls = tls_dir.map_or(String::new(), |d| {
        format!(
            "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\n",
            d.display()
        )
    });
    format!("{tls}basic_auth_users:\n  {USER}: '{hash}'\n")
}

fn remediator(config: &str, web: Option<&str>, disable_lifecycle: bool) -> Remediator {
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let web_config = web.map(|w| {
        let path = dir.path().join("web.yml");
        std::fs::write(&path, w).unwrap();
        path
    });
    Remediator::start_with(
        dir,
        config,
        Flags {
            disable_lifecycle,
            web_config,
            ..Flags::default()
        },
    )
}

fn post(url: &str, auth: Option<&str>) -> u16 {
    let mut headers = vec![];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    http::request("POST", url, &headers, Some(b""))
        .unwrap_or_else(|e| panic!("POST {url}: {e:#}"))
        .status
}

#[test]
fn reload_is_forbidden_without_enable_lifecycle_and_sighup_still_reloads() {
    let mut exp = Exporter::start_with(exporter::Options {
        config: Some("probes: []\n"),
        disable_lifecycle: true,
        ..exporter::Options::default()
    });
    let mut rem = remediator(
        "webhook: {bearer_token_file: '{dir}/token'}\nrules: []\n",
        None,
        true,
    );
    for (url, status_url, metric) in [
        (
            exp.url("/-/reload"),
            exp.url("/metrics"),
            "stackmedic_exporter_config_last_reload_successful",
        ),
        (
            rem.url("/-/reload"),
            rem.url("/metrics"),
            "stackmedic_remediator_config_last_reload_successful",
        ),
    ] {
        let r = http::request("POST", &url, &[], Some(b"")).unwrap();
        assert_eq!(r.status, 403, "{url}: {}", r.text());
        assert!(r.text().contains("--web.enable-lifecycle"), "{}", r.text());
        // Even with the webhook's token: the lifecycle switch decides.
        assert_eq!(post(&url, Some(&format!("Bearer {TOKEN}"))), 403);
        let s = metrics::scrape(&status_url).unwrap();
        assert_eq!(metrics::find(&s, metric, &[]), Some(1.0));
    }
    // SIGHUP reloads either way: a broken file shows as a failed reload.
    std::fs::write(exp.config_path(), "probes: [nonsense\n").unwrap();
    std::fs::write(rem.dir().join("remediator.yml"), "rules: [nonsense\n").unwrap();
    assert!(exp.process().signal("HUP"));
    assert!(rem.process().signal("HUP"));
    for (url, metric) in [
        (
            exp.url("/metrics"),
            "stackmedic_exporter_config_last_reload_successful",
        ),
        (
            rem.url("/metrics"),
            "stackmedic_remediator_config_last_reload_successful",
        ),
    ] {
        let failed = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            metrics::scrape(&url).is_ok_and(|s| metrics::find(&s, metric, &[]) == Some(0.0))
        });
        assert!(failed, "SIGHUP did not reload ({metric})");
    }
}

#[test]
fn reload_with_lifecycle_needs_the_web_credentials() {
    let web = web_config(4, None);
    let exp = Exporter::start_with(exporter::Options {
        config: Some("probes: []\n"),
        web_config: Some(&web),
        ..exporter::Options::default()
    });
    let rem = remediator(
        "webhook: {bearer_token_file: '{dir}/token'}\nrules: []\n",
        Some(&web),
        false,
    );
    for url in [exp.url("/-/reload"), rem.url("/-/reload")] {
        assert_eq!(post(&url, None), 401, "{url} without credentials");
        assert_eq!(post(&url, Some(&basic(USER, "wrong"))), 401);
        // The webhook's token is no web credential.
        assert_eq!(post(&url, Some(&format!("Bearer {TOKEN}"))), 401);
        assert_eq!(post(&url, Some(&basic(USER, PASSWORD))), 200, "{url}");
    }
}

#[test]
fn without_webhook_credentials_the_web_basic_auth_protects_the_webhook() {
    let rem = remediator("rules: []\n", Some(&web_config(4, None)), false);
    let body = serde_json::to_vec(&payload(vec![alert(
        "firing",
        &[("alertname", "X")],
        "2026-11-22T10:00:00Z",
    )]))
    .unwrap();
    let send = |auth: Option<String>| {
        let mut headers = vec![("Content-Type", "application/json".to_owned())];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http::request("POST", &rem.url("/webhook"), &headers, Some(&body))
            .unwrap()
            .status
    };
    assert_eq!(send(None), 401);
    assert_eq!(send(Some(format!("Bearer {TOKEN}"))), 401);
    assert_eq!(send(Some(basic(USER, PASSWORD))), 200);
}

/// Median time of `n` requests with `auth` to `url`, each answered 401.
fn median_401(url: &str, auth: &str, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            let r = http::request("GET", url, &[("Authorization", auth)], None).unwrap();
            assert_eq!(r.status, 401);
            started.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn an_unknown_user_takes_as_long_as_a_wrong_password() {
    // Cost 10 is the usual cost of `htpasswd -B` and what the exporter-toolkit documents.
    let web = web_config(10, None);
    let exp = Exporter::start_with(exporter::Options {
        config: Some("probes: []\n"),
        web_config: Some(&web),
        ..exporter::Options::default()
    });
    let rem = remediator("rules: []\n", Some(&web), false);
    for url in [exp.url("/metrics"), rem.url("/metrics")] {
        // Interleaved rounds, so that a change in machine load hits both alike.
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..3 {
            known.push(median_401(&url, &basic(USER, "wrong password"), 3));
            unknown.push(median_401(&url, &basic("nobody", "wrong password"), 3));
        }
        known.sort();
        unknown.sort();
        let (k, u) = (known[1], unknown[1]);
        eprintln!("{url}: median 401 time: known user {k:?}, unknown user {u:?}");
        // bcrypt at cost 10 takes tens of milliseconds; an answer without it well under 5.
        assert!(
            k >= Duration::from_millis(15),
            "a wrong password took only {k:?}"
        );
        let ratio = u.as_secs_f64() / k.as_secs_f64();
        assert!(
            (0.5..=2.0).contains(&ratio),
            "{url}: an unknown user took {u:?}, a known user with a wrong password {k:?}"
        );
    }
}

/// With hashes of mixed costs in the web configuration (4 and 10), a wrong password of the
/// cheap user is rejected as slowly as an unknown user: every rejection costs the work of the
/// highest cost, so user names cannot be told apart by timing. Without it the cheap user's
/// rejection would take about 1/64 of the time.
#[test]
fn rejections_take_as_long_whatever_the_costs_of_the_hashes() {
    let cheap = bcrypt::hash(PASSWORD, 4).unwrap();
    let dear = bcrypt::hash(PASSWORD, 10).unwrap();
    let web = format!("basic_auth_users:\n  cheap: '{cheap}'\n  {USER}: '{dear}'\n");
    let exp = Exporter::start_with(exporter::Options {
        config: Some("probes: []\n"),
        web_config: Some(&web),
        ..exporter::Options::default()
    });
    let url = exp.url("/metrics");
    let (mut low, mut high, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved rounds, so that a change in machine load hits all alike.
    for _ in 0..3 {
        low.push(median_401(&url, &basic("cheap", "wrong password"), 3));
        high.push(median_401(&url, &basic(USER, "wrong password"), 3));
        unknown.push(median_401(&url, &basic("nobody", "wrong password"), 3));
    }
    for v in [&mut low, &mut high, &mut unknown] {
        v.sort();
    }
    let (l, h, u) = (low[1], high[1], unknown[1]);
    eprintln!("median 401 time: cost-4 user {l:?}, cost-10 user {h:?}, unknown user {u:?}");
    for (what, t) in [("cost-4 user", l), ("cost-10 user", h)] {
        let ratio = t.as_secs_f64() / u.as_secs_f64();
        assert!(
            (0.5..=2.0).contains(&ratio),
            "a wrong password of the {what} took {t:?}, an unknown user {u:?}"
        );
    }
    // The right password still works for the cheap user.
    let r = http::request_with_timeout(
        "GET",
        &url,
        &[("Authorization", &basic("cheap", PASSWORD))],
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

/// An HTTPS request with reqwest (trusting only `ca`), returning the status.
fn https(method: &str, url: &str, ca: &[u8], auth: Option<&str>, body: Option<Vec<u8>>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca).unwrap()])
            .build()
            .unwrap();
        let mut req = client.request(method.parse().unwrap(), url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"))
            .status()
            .as_u16()
    })
}

#[test]
fn tls_and_web_basic_auth_with_a_bearer_webhook_through_a_real_alertmanager() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();
    let rem = remediator(
        "webhook: {bearer_token_file: '{dir}/token'}\nrules: []\n",
        Some(&web_config(4, Some(certs.path()))),
        false,
    );
    let base = format!("https://127.0.0.1:{}", rem.port());
    let good = basic(USER, PASSWORD);
    let bearer = format!("Bearer {TOKEN}");
    let body = serde_json::to_vec(&payload(vec![alert(
        "firing",
        &[("alertname", "Direct")],
        "2026-11-22T10:00:00Z",
    )]))
    .unwrap();

    // The page, the API and the metrics need the web user; the token is not enough.
    for path in ["/", "/api/actions", "/metrics", "/-/healthy"] {
        let url = format!("{base}{path}");
        assert_eq!(https("GET", &url, &ca, None, None), 401, "{path}");
        assert_eq!(https("GET", &url, &ca, Some(&bearer), None), 401, "{path}");
        assert_eq!(https("GET", &url, &ca, Some(&good), None), 200, "{path}");
    }
    // The webhook needs its token; the web user is not enough.
    let webhook = format!("{base}/webhook");
    assert_eq!(https("POST", &webhook, &ca, None, Some(body.clone())), 401);
    assert_eq!(
        https("POST", &webhook, &ca, Some(&good), Some(body.clone())),
        401
    );
    assert_eq!(https("POST", &webhook, &ca, Some(&bearer), Some(body)), 200);
    // Plain HTTP is not served.
    assert!(http::request_with_timeout(
        "GET",
        &rem.url("/-/healthy"),
        &[],
        None,
        Duration::from_secs(5)
    )
    .map_or(true, |r| r.status != 200));

    // A real Alertmanager delivers over TLS with the token (http_config.authorization and
    // tls_config.ca_file), while the web user protects the rest.
    let token_file = rem.dir().join("token");
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: remediator\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n\
         - name: remediator\n  webhook_configs:\n  - url: '{base}/webhook'\n    http_config:\n      authorization:\n        type: Bearer\n        credentials_file: {}\n      tls_config:\n        ca_file: {}\n",
        token_file.display(),
        certs.path().join("ca.crt").display(),
    ));
    am.post_alerts(&json!([{"labels": {"alertname": "ThroughAlertmanager", "severity": "page"}}]))
        .unwrap();
    let metrics_text = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
                .build()
                .unwrap()
                .get(format!("{base}/metrics"))
                .header("Authorization", &good)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let accepted = |text: &str| {
        metrics::parse(text).ok().and_then(|s| {
            metrics::find(
                &s,
                "stackmedic_remediator_webhooks_total",
                &[("result", "accepted")],
            )
        })
    };
    let mut last = String::new();
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        last = metrics_text();
        accepted(&last).unwrap_or(0.0) >= 2.0
    });
    assert!(
        delivered,
        "Alertmanager's webhook was not accepted:\n{}\n{}",
        last.lines()
            .filter(|l| l.contains("webhooks_total"))
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read_to_string(am.dir().join("alertmanager.stderr.log")).unwrap_or_default()
    );
    // The only refused webhooks are the two sent above without the token.
    let s = metrics::parse(&last).unwrap();
    assert_eq!(
        metrics::find(
            &s,
            "stackmedic_remediator_webhooks_total",
            &[("result", "unauthorized")]
        ),
        Some(2.0)
    );
    assert!(
        metrics::find(
            &s,
            "stackmedic_remediator_alerts_total",
            &[("decision", "unmatched")]
        )
        .unwrap_or(0.0)
            >= 2.0
    );
}

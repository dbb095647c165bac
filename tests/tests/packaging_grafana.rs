//! The Grafana provisioning files beside `dashboards/`: they parse, the data source is a default
//! Prometheus one that the dashboards' `datasource` variable starts at, and the dashboard
//! provider's folder is where the exporter's Debian package installs every shipped dashboard
//! (and where the README's container example mounts `dashboards/`).
//!
//! No Grafana is available to this suite (Debian has no package, and no image can be pulled), so
//! a Grafana actually loading the files is not tested; what it reads is.

use std::collections::BTreeSet;

use serde_json::Value;
use stackmedic_tests::alerting::{dashboards, read_repo_file, repo_files};
use stackmedic_tests::packaging::{deb_file, run_ok};

fn yaml(relative: &str) -> Value {
    serde_saphyr::from_str(&read_repo_file(relative))
        .unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

/// Every `datasource` object in a dashboard, as JSON text.
fn datasources(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(ds) = map.get("datasource") {
                out.insert(ds.to_string());
            }
            map.values().for_each(|v| datasources(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| datasources(v, out)),
        _ => {}
    }
}

#[test]
fn provisioning_points_at_the_shipped_dashboards() {
    let sources = yaml("dashboards/provisioning/datasources/stackmedic.yml");
    assert_eq!(sources["apiVersion"], 1);
    let list = sources["datasources"].as_array().expect("datasources list");
    assert_eq!(list.len(), 1, "{sources:#}");
    let prometheus = &list[0];
    assert_eq!(prometheus["type"], "prometheus");
    assert_eq!(prometheus["isDefault"], true);
    assert_eq!(prometheus["access"], "proxy");
    assert!(prometheus["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://")));

    let providers = yaml("dashboards/provisioning/dashboards/stackmedic.yml");
    assert_eq!(providers["apiVersion"], 1);
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"], "file");
    assert_eq!(provider["folder"], "stackmedic");
    let path = provider["options"]["path"]
        .as_str()
        .expect("options.path")
        .trim_end_matches('/');

    // The exporter's package installs every shipped dashboard into that folder.
    let shipped: Vec<String> = repo_files("dashboards", ".json")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(shipped.len() >= 2, "{shipped:?}");
    let deb = deb_file("stackmedic-exporter");
    let contents = run_ok("dpkg-deb", &["--contents", &deb.display().to_string()]);
    for name in &shipped {
        let installed = format!(".{path}/{name}");
        assert!(
            contents.lines().any(|l| l.ends_with(&installed)),
            "{} does not install {installed}:\n{contents}",
            deb.display()
        );
    }
    for file in ["datasources/stackmedic.yml", "dashboards/stackmedic.yml"] {
        let installed = format!("./usr/share/stackmedic/grafana/provisioning/{file}");
        assert!(
            contents.lines().any(|l| l.ends_with(&installed)),
            "the package does not ship {installed}"
        );
    }
    // The README's container example mounts the repository's folders at the same places.
    let readme = read_repo_file("README.md");
    assert!(
        readme.contains(&format!("\"$PWD/dashboards:{path}:ro\"")),
        "README mount of {path}"
    );
    assert!(readme.contains("\"$PWD/dashboards/provisioning:/etc/grafana/provisioning:ro\""));

    // The dashboards start at the default Prometheus data source: a `datasource` variable of
    // that type, and every query uses it.
    for (name, dashboard) in dashboards() {
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            variables.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: no datasource variable of type prometheus"
        );
        let mut used = BTreeSet::new();
        datasources(&dashboard, &mut used);
        assert_eq!(
            used,
            BTreeSet::from([r#"{"type":"prometheus","uid":"${datasource}"}"#.to_owned()]),
            "{name}: every panel and query should use the datasource variable"
        );
    }
}

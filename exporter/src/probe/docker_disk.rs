//! Docker disk usage (the assistant backend: `docker system df -v`): bytes of images, containers, volumes
//! and build cache, what of it is reclaimable, and the volumes no container uses (count and
//! bytes; their names as label values only when they match an allow-listed pattern, so the
//! number of series stays bounded).
//!
//! The figures come from the Engine's `GET /system/df`, computed the way `docker system df`
//! computes them. The Engine changed the shape of that answer in API 1.52 (counts and sums
//! per type instead of the objects); both shapes are read. bollard 0.21 models only the new
//! one, so this probe asks the socket itself, with hyper.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use stackmedic_common::config::{join, Regex};
use stackmedic_common::ConfigErrors;
use tokio::net::UnixStream;

use super::filesystem::bytes_words;
use super::{containers, Health, Item, ProbeError, Reason, RunContext};
use crate::metrics::{Family, Samples};

static BYTES: Family = Family::gauge(
    "stackmedic_docker_disk_bytes",
    "Disk space used by the Docker Engine, by type: images, containers, volumes, build_cache.",
);
static RECLAIMABLE: Family = Family::gauge(
    "stackmedic_docker_disk_reclaimable_bytes",
    "Bytes a prune of the type could free (images without containers, stopped containers, unused volumes, unused build cache).",
);
static OBJECTS: Family = Family::gauge(
    "stackmedic_docker_disk_objects",
    "Objects of the type: images, containers, volumes, build cache records.",
);
static ACTIVE: Family = Family::gauge(
    "stackmedic_docker_disk_active_objects",
    "Objects of the type in use: images with containers, running containers, volumes mounted by a container, build cache in use.",
);
static UNUSED: Family = Family::gauge(
    "stackmedic_docker_volumes_unused",
    "Volumes that no container (running or not) uses.",
);
static UNUSED_BYTES: Family = Family::gauge(
    "stackmedic_docker_volumes_unused_bytes",
    "Bytes of the volumes that no container uses.",
);
static UNUSED_VOLUME: Family = Family::gauge(
    "stackmedic_docker_volume_unused_bytes",
    "Bytes of one unused volume whose name matches report_unused_volumes.",
);

/// The `type` label values.
const TYPES: [&str; 4] = ["images", "containers", "volumes", "build_cache"];

/// Largest answer read from the Engine (a `df` of thousands of objects is a few MiB).
const MAX_ANSWER: usize = 64 << 20;

fn default_max_reported() -> usize {
    20
}

/// Settings of a `docker_disk` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerDiskConfig {
    /// Engine socket, `unix:///var/run/docker.sock` by default (or `DOCKER_HOST`).
    pub host: Option<String>,
    /// Unused volumes whose name matches are reported one by one (by `volume` label).
    pub report_unused_volumes: Option<Regex>,
    /// Most unused volumes reported one by one, largest first.
    #[serde(default = "default_max_reported")]
    pub max_reported_volumes: usize,
}

impl DockerDiskConfig {
    /// Checks the socket address and the limit.
    pub fn validate(&mut self, path: &str, errs: &mut ConfigErrors) {
        if let Some(h) = &self.host {
            if !h.starts_with("unix://") || h.len() <= "unix://".len() {
                errs.push(join(path, "host"), "only unix:// sockets are supported");
            }
        }
        if self.max_reported_volumes > 1000 {
            errs.push(join(path, "max_reported_volumes"), "must be at most 1000");
        }
    }

    fn socket(&self) -> PathBuf {
        let from_env = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| h.starts_with("unix://"));
        let host = self
            .host
            .clone()
            .or(from_env)
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        PathBuf::from(host.trim_start_matches("unix://"))
    }
}

/// A `docker_disk` probe.
pub struct DockerDiskProbe {
    cfg: DockerDiskConfig,
}

impl DockerDiskProbe {
    /// Builds the probe.
    #[must_use]
    pub fn new(cfg: DockerDiskConfig) -> Self {
        Self { cfg }
    }

    /// Asks the Engine for its disk usage.
    ///
    /// # Errors
    /// `connect` (the socket is absent or refuses), `docker` (an error answer), `parse`,
    /// `timeout` (a large `df` can take long: the Engine sizes every volume).
    pub async fn run(&self, cx: &RunContext, out: &mut Samples) -> Result<(), ProbeError> {
        let socket = self.cfg.socket();
        let body = match tokio::time::timeout_at(
            cx.deadline(),
            get(&socket, "/system/df?verbose=1"),
        )
        .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                out.flag(&containers::DOCKER_UP, &[], e.reason != Reason::Connect);
                return Err(e);
            }
            Err(_) => {
                out.flag(&containers::DOCKER_UP, &[], true);
                return Err(cx.expired("docker system df"));
            }
        };
        out.flag(&containers::DOCKER_UP, &[], true);
        let df: DiskUsage = serde_json::from_slice(&body)
            .map_err(|e| ProbeError::new(Reason::Parse, format!("docker system df answer: {e}")))?;
        let usage = df.summarize();
        for (i, t) in TYPES.iter().enumerate() {
            let u = &usage.types[i];
            out.push(&BYTES, &[("type", t)], u.bytes as f64);
            out.push(&RECLAIMABLE, &[("type", t)], u.reclaimable as f64);
            out.push(&OBJECTS, &[("type", t)], u.objects as f64);
            out.push(&ACTIVE, &[("type", t)], u.active as f64);
        }
        let total: u64 = usage.types.iter().map(|t| t.bytes).sum();
        let reclaimable: u64 = usage.types.iter().map(|t| t.reclaimable).sum();
        cx.report(Item::new(
            "docker disk",
            "",
            Health::Ok,
            format!(
                "{} used, {} reclaimable",
                bytes_words(total),
                bytes_words(reclaimable)
            ),
        ));
        if !usage.unused.is_empty() {
            // A warning, not a failure: unused volumes are reviewed by a person, never pruned.
            let bytes: u64 = usage.unused.iter().map(|(_, b)| *b).sum();
            cx.report(
                Item::new(
                    "volumes",
                    "",
                    Health::Warning,
                    format!("{} unused ({})", usage.unused.len(), bytes_words(bytes)),
                )
                .detail("review before removing any"),
            );
        }
        out.push(&UNUSED, &[], usage.unused.len() as f64);
        out.push(
            &UNUSED_BYTES,
            &[],
            usage.unused.iter().map(|(_, b)| *b).sum::<u64>() as f64,
        );
        if let Some(re) = &self.cfg.report_unused_volumes {
            let mut listed: Vec<&(String, u64)> = usage
                .unused
                .iter()
                .filter(|(name, _)| re.get().is_match(name))
                .collect();
            listed.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            for (name, bytes) in listed.into_iter().take(self.cfg.max_reported_volumes) {
                out.push(&UNUSED_VOLUME, &[("volume", name)], *bytes as f64);
            }
        }
        Ok(())
    }
}

/// `GET path` on the Engine's socket, the body read up to [`MAX_ANSWER`].
async fn get(socket: &std::path::Path, path: &str) -> Result<Bytes, ProbeError> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        ProbeError::new(
            Reason::Connect,
            format!("docker engine at {}: {e}", socket.display()),
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::new(Reason::Connect, format!("docker engine: {e}")))?;
    // The connection task ends when the sender is dropped, at the end of this request.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path)
        .header(http::header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::new(Reason::Other, e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ProbeError::new(Reason::Docker, format!("docker engine: {e}")))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| ProbeError::new(Reason::Docker, format!("docker engine answer: {e}")))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(ProbeError::new(
            Reason::Docker,
            format!(
                "docker engine answered {}: {}",
                status.as_u16(),
                crate::support::truncate(text.trim(), 200)
            ),
        ));
    }
    Ok(body)
}

/// Sums of one type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TypeUsage {
    bytes: u64,
    reclaimable: u64,
    objects: u64,
    active: u64,
}

/// The figures of one `df`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Usage {
    /// In the order of [`TYPES`].
    types: [TypeUsage; 4],
    /// Unused volumes: name and bytes.
    unused: Vec<(String, u64)>,
}

/// `GET /system/df` in both shapes: the objects (API before 1.52) or sums per type (1.52 on).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DiskUsage {
    layers_size: Option<i64>,
    images: Option<Vec<Image>>,
    containers: Option<Vec<Container>>,
    volumes: Option<Vec<Volume>>,
    build_cache: Option<Vec<BuildCache>>,
    image_usage: Option<Summary<serde_json::Value>>,
    container_usage: Option<Summary<serde_json::Value>>,
    volume_usage: Option<Summary<Volume>>,
    build_cache_usage: Option<Summary<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Image {
    #[serde(default)]
    size: i64,
    #[serde(default)]
    shared_size: i64,
    #[serde(default)]
    containers: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Container {
    #[serde(default)]
    size_rw: i64,
    #[serde(default)]
    state: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Volume {
    name: String,
    usage_data: Option<VolumeUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeUsage {
    size: i64,
    ref_count: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BuildCache {
    #[serde(default)]
    size: i64,
    #[serde(default)]
    in_use: bool,
    #[serde(default)]
    shared: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Summary<T> {
    #[serde(default)]
    active_count: i64,
    #[serde(default)]
    total_count: i64,
    #[serde(default)]
    reclaimable: i64,
    #[serde(default)]
    total_size: i64,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

/// A size the Engine may report as -1 (not computed) as bytes.
fn size(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl<T> Summary<T> {
    fn usage(&self) -> TypeUsage {
        TypeUsage {
            bytes: size(self.total_size),
            reclaimable: size(self.reclaimable),
            objects: size(self.total_count),
            active: size(self.active_count),
        }
    }
}

impl DiskUsage {
    fn summarize(&self) -> Usage {
        let mut u = Usage::default();
        // Images: as `docker system df`, the layers' total less what images with containers
        // use beyond the layers they share.
        if let Some(s) = &self.image_usage {
            u.types[0] = s.usage();
        } else {
            let images = self.images.as_deref().unwrap_or_default();
            let total = size(self.layers_size.unwrap_or(0));
            let used: u64 = images
                .iter()
                .filter(|i| i.containers > 0 && i.size >= 0 && i.shared_size >= 0)
                .map(|i| size(i.size - i.shared_size))
                .sum();
            u.types[0] = TypeUsage {
                bytes: total,
                reclaimable: total.saturating_sub(used),
                objects: images.len() as u64,
                active: images.iter().filter(|i| i.containers > 0).count() as u64,
            };
        }
        if let Some(s) = &self.container_usage {
            u.types[1] = s.usage();
        } else {
            let list = self.containers.as_deref().unwrap_or_default();
            u.types[1] = TypeUsage {
                bytes: list.iter().map(|c| size(c.size_rw)).sum(),
                reclaimable: list
                    .iter()
                    .filter(|c| c.state != "running")
                    .map(|c| size(c.size_rw))
                    .sum(),
                objects: list.len() as u64,
                active: list.iter().filter(|c| c.state == "running").count() as u64,
            };
        }
        let volumes: &[Volume] = match (&self.volume_usage, &self.volumes) {
            (Some(s), _) => &s.items,
            (None, Some(v)) => v,
            (None, None) => &[],
        };
        let used = |v: &Volume| v.usage_data.as_ref().is_some_and(|d| d.ref_count > 0);
        let bytes = |v: &Volume| v.usage_data.as_ref().map_or(0, |d| size(d.size));
        u.unused = volumes
            .iter()
            .filter(|v| !used(v))
            .map(|v| (v.name.clone(), bytes(v)))
            .collect();
        u.types[2] = match &self.volume_usage {
            Some(s) => s.usage(),
            None => TypeUsage {
                bytes: volumes.iter().map(bytes).sum(),
                reclaimable: u.unused.iter().map(|(_, b)| *b).sum(),
                objects: volumes.len() as u64,
                active: volumes.iter().filter(|v| used(v)).count() as u64,
            },
        };
        if let Some(s) = &self.build_cache_usage {
            u.types[3] = s.usage();
        } else {
            let list = self.build_cache.as_deref().unwrap_or_default();
            // Shared records belong to more than one build; the CLI leaves them out of both sums.
            u.types[3] = TypeUsage {
                bytes: list
                    .iter()
                    .filter(|b| !b.shared)
                    .map(|b| size(b.size))
                    .sum(),
                reclaimable: list
                    .iter()
                    .filter(|b| !b.shared && !b.in_use)
                    .map(|b| size(b.size))
                    .sum(),
                objects: list.len() as u64,
                active: list.iter().filter(|b| b.in_use).count() as u64,
            };
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_answer_is_summed_as_the_cli_does() {
        let df: DiskUsage = serde_json::from_str(
            r#"{"LayersSize": 1000,
                "Images": [{"Size": 600, "SharedSize": 100, "Containers": 1}, {"Size": 400, "SharedSize": 0, "Containers": 0}],
                "Containers": [{"SizeRw": 10, "State": "running"}, {"SizeRw": 5, "State": "exited"}],
                "Volumes": [{"Name": "owui-data", "UsageData": {"Size": 70, "RefCount": 1}},
                            {"Name": "old-data", "UsageData": {"Size": 30, "RefCount": 0}},
                            {"Name": "fresh", "UsageData": {"Size": -1, "RefCount": 0}}],
                "BuildCache": [{"Size": 8, "InUse": false, "Shared": false}, {"Size": 4, "InUse": true, "Shared": false}, {"Size": 2, "InUse": false, "Shared": true}]}"#,
        )
        .unwrap();
        let u = df.summarize();
        assert_eq!(
            u.types[0],
            TypeUsage {
                bytes: 1000,
                reclaimable: 500,
                objects: 2,
                active: 1
            }
        );
        assert_eq!(
            u.types[1],
            TypeUsage {
                bytes: 15,
                reclaimable: 5,
                objects: 2,
                active: 1
            }
        );
        assert_eq!(
            u.types[2],
            TypeUsage {
                bytes: 100,
                reclaimable: 30,
                objects: 3,
                active: 1
            }
        );
        assert_eq!(
            u.types[3],
            TypeUsage {
                bytes: 12,
                reclaimable: 8,
                objects: 3,
                active: 1
            }
        );
        assert_eq!(u.unused, vec![("old-data".into(), 30), ("fresh".into(), 0)]);
    }

    #[test]
    fn answer_of_api_1_52_is_read() {
        let df: DiskUsage = serde_json::from_str(
            r#"{"ImageUsage": {"ActiveCount": 1, "TotalCount": 2, "Reclaimable": 5, "TotalSize": 9},
                "ContainerUsage": {"ActiveCount": 0, "TotalCount": 0, "Reclaimable": 0, "TotalSize": 0},
                "VolumeUsage": {"ActiveCount": 0, "TotalCount": 1, "Reclaimable": 3, "TotalSize": 3,
                                "Items": [{"Name": "v", "UsageData": {"Size": 3, "RefCount": 0}}]},
                "BuildCacheUsage": {"ActiveCount": 0, "TotalCount": 0, "Reclaimable": 0, "TotalSize": 0}}"#,
        )
        .unwrap();
        let u = df.summarize();
        assert_eq!(
            u.types[0],
            TypeUsage {
                bytes: 9,
                reclaimable: 5,
                objects: 2,
                active: 1
            }
        );
        assert_eq!(u.types[2].reclaimable, 3);
        assert_eq!(u.unused, vec![("v".into(), 3)]);
    }
}

//! The deployment files in `deploy/`: the systemd unit passes `systemd-analyze verify` (when the
//! tool exists) with the restart and hardening options in force; the container image is
//! multi-stage, runs as a user of its own and checks `/health?strict=1`; compose runs it with
//! PostgreSQL. The image itself is not built here (README, "Deployment").

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(file: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (path, text)
}

/// The `key=value` lines of a unit or an env file, comments left out.
fn settings(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

#[test]
fn the_systemd_unit_restarts_always_and_is_hardened() {
    let (_, unit) = deploy("trading-supervisor.service");
    let set = settings(&unit);
    let has = |key: &str, value: &str| set.iter().any(|(k, v)| *k == key && *v == value);
    for (key, value) in [
        ("Restart", "always"),
        ("StartLimitIntervalSec", "0"),
        ("ExecStart", "/usr/local/bin/supervisor serve"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ReadWritePaths", "/var/lib/trading-supervisor"),
        ("StateDirectory", "trading-supervisor"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("DynamicUser", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert!(has(key, value), "{key}={value} missing from the unit");
    }
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-analyze is not installed: the unit is not verified on this machine");
        return;
    }
    let (_, unit) = deploy("trading-supervisor.service");
    // verify checks that ExecStart exists: point it at the binary this build made.
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/supervisor",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_supervisor")),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("trading-supervisor.service");
    std::fs::write(&path, unit).expect("writing the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("running systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It exits 0 on keys it ignores: any remark at all is a failure.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}: {said}",
        out.status
    );
}

#[test]
fn the_image_is_multi_stage_non_root_and_checks_strict_health() {
    let (_, dockerfile) = deploy("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let from = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(from >= 2, "multi-stage: {from} FROM line(s)");
    assert!(lines.iter().any(|l| l.starts_with("COPY --from=build")));
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    let healthcheck = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .expect("a HEALTHCHECK");
    assert!(healthcheck.contains("/health?strict=1"), "{healthcheck}");
    assert!(dockerfile.contains("cargo build --release --locked"));
    // The build context is the repository: what it must leave out.
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect(".dockerignore");
    for excluded in ["target/", ".git/", "deploy/.env"] {
        assert!(ignore.lines().any(|l| l == excluded), "{excluded}");
    }
}

#[test]
fn compose_runs_the_service_with_postgresql() {
    let (_, compose) = deploy("compose.yaml");
    for needed in [
        "  postgres:\n",
        "  supervisor:\n",
        "dockerfile: deploy/Dockerfile",
        "condition: service_healthy",
        "DATABASE_URL: postgres://",
        "restart: unless-stopped",
        "SUPERVISOR__SECURITY__ENCRYPTION_KEY",
        "127.0.0.1:8000:8000",
    ] {
        assert!(
            compose.contains(needed),
            "{needed:?} missing from compose.yaml"
        );
    }
    // Every secret compose asks for is named in the example env file.
    let (_, example) = deploy("env.example");
    let names: Vec<&str> = settings(&example).iter().map(|(k, _)| *k).collect();
    for secret in [
        "POSTGRES_PASSWORD",
        "SUPERVISOR_ADMIN_TOKEN",
        "SUPERVISOR_ENCRYPTION_KEY",
    ] {
        assert!(compose.contains(&format!("${{{secret}")), "{secret}");
        assert!(names.contains(&secret), "{secret} missing from env.example");
    }
}

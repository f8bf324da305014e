//! The `supervisor migrate` and `serve` commands work as a user runs them. (Migrations up, down
//! and up again, and the seed data, are tested in `migration/tests/database.rs` on both
//! databases.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use trading_supervisor::configuration::DatabaseSettings;
use trading_supervisor::database;

use crate::helpers::{fresh_database, poll_until};

async fn count(db: &DatabaseConnection, table: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[actix_web::test]
async fn the_migrate_command_creates_and_migrates_the_database() {
    let test_db = fresh_database().await;
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .arg("migrate")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env("SUPERVISOR__DATABASE__URL", &test_db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = database::connect(&DatabaseSettings {
        url: test_db.url.clone(),
        max_connections: 1,
    })
    .await
    .unwrap();
    assert_eq!(count(&db, "market_holidays").await, 15);
}

#[actix_web::test]
async fn serve_answers_health_and_shuts_down_on_sigterm() {
    let test_db = fresh_database().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env("SUPERVISOR__DATABASE__URL", &test_db.url)
        .env("SUPERVISOR__SERVER__PORT", "0")
        .env_remove("SUPERVISOR__SECURITY__ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(2)
        .map(|l| l.unwrap())
        .collect();
    let url = lines[0]
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("listening line")
        .trim_end_matches('/')
        .to_string();
    assert!(lines[1].starts_with("admin token (generated for this run): "));

    let client = awc::Client::default();
    let mut resp = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["database"]["reachable"], true);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = poll_until(Duration::from_secs(15), "supervisor to exit", || {
        let r = child.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

//! The single database writer: a panicking write job fails only its caller; a dead writer fails
//! `/health` and ends `serve` with a non-zero exit so that systemd restarts it.

use std::time::Duration;

use appliance::store::{StoreError, WriterState};
use tower::ServiceExt;

use super::load::{self, Outcome, Target};
use crate::flows::clients_patch;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_write_job_fails_only_its_caller() {
    let app = spawn_app_with(&clients_patch()).await;
    let store = app.state.store.clone();
    store.write(|c| Ok(c.execute_batch("CREATE TABLE probe (v TEXT NOT NULL)")?)).await.unwrap();

    // Queue many writes at once so that the panicking one shares a batch with others.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        set.spawn(async move {
            let r = store
                .write(move |c| {
                    c.execute("INSERT INTO probe (v) VALUES (?1)", [format!("job {i}")])?;
                    if i == 20 {
                        let empty: Vec<u8> = Vec::new();
                        let _ = empty[i];
                    }
                    Ok(())
                })
                .await;
            (i, r)
        });
    }
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            (20, Err(StoreError::JobPanicked(msg))) => assert!(msg.contains("index out of bounds"), "{msg}"),
            (20, other) => panic!("the panicking job answered {other:?}"),
            (i, r) => assert!(r.is_ok(), "job {i}: {r:?}"),
        }
    }
    let rows: Vec<String> = store
        .read(|c| {
            let mut st = c.prepare("SELECT v FROM probe")?;
            let rows = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 39, "the panicking job's insert was rolled back, the others kept");
    assert!(!rows.contains(&"job 20".to_string()));

    // The writer lives on: health is fine and real requests still write.
    assert_eq!(store.writer_state(), WriterState::Running);
    assert_eq!(app.get("/health").await.status(), 200);
    assert!(matches!(load::client_credentials(&Target::new(&app.base)).await, Outcome::Done(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_writer_fails_health_and_stops_the_server_with_an_error() {
    let mut app = spawn_app().await;
    let state = app.state.clone();
    let health = || async {
        let router = appliance::http::router::build(state.clone(), &[appliance::config::Resource::Health]);
        let req = axum::http::Request::get("/health").body(axum::body::Body::empty()).unwrap();
        router.oneshot(req).await.unwrap().status()
    };
    assert_eq!(health().await, 200);

    app.state.store.kill_writer();
    let result = app.stopped_by_itself(Duration::from_secs(20)).await;
    let err = result.expect_err("the server must end with an error when its writer dies");
    assert!(format!("{err:#}").contains("writer"), "{err:#}");
    assert_eq!(app.state.store.writer_state(), WriterState::Died);
    assert_eq!(health().await, 503);
    assert!(matches!(app.state.store.write(|_| Ok(())).await, Err(StoreError::WriterGone)));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_exits_non_zero_when_its_writer_dies() {
    let dir = tempdir();
    let trigger = dir.path().join("kill-writer");
    let port = free_port();
    let config = dir.path().join("config.yaml");
    let yaml = merged_yaml(
        &test_config_yaml(&format!("http://127.0.0.1:{port}/"), &dir.path().join("appliance.db")),
        &clients_patch(),
    );
    std::fs::write(&config, yaml).unwrap();
    let mut server = ServeProcess::start_with_env(
        &config,
        &[("APPLIANCE_FAULT_KILL_WRITER", trigger.to_str().unwrap())],
        Duration::from_secs(60),
    )
    .unwrap();
    let t = Target::new(&format!("http://127.0.0.1:{port}"));
    assert!(matches!(load::client_credentials(&t).await, Outcome::Done(_)));

    // The writer dies before its next batch; the write that woke it fails.
    std::fs::write(&trigger, b"").unwrap();
    let outcome = load::client_credentials(&t).await;
    assert!(matches!(outcome, Outcome::Failed(500.., _) | Outcome::NoAnswer(_)), "{outcome:?}");
    let status = server.wait_for_exit(Duration::from_secs(20)).expect("serve exits by itself");
    assert!(!status.success(), "serve exited with {status}");
    std::thread::sleep(Duration::from_millis(100));
    let log = server.stderr_text();
    assert!(log.contains("the database writer stopped"), "{log}");
}

//! `syn2mas migrate` speed: imports a synthetic Synapse SQLite database (issue 13).
//!
//!     cargo bench --bench syn2mas_import               # 100,000 users
//!     USERS=10000 cargo bench --bench syn2mas_import
//!
//! The Synapse database has the columns of Synapse 1.163.2's import tables; each user has a
//! bcrypt-shaped password hash, an email address, and one device with an access token; every
//! fifth user also has a second device with a refresh-token pair, every tenth an `oidc-github`
//! external id (an upstream link), every hundredth a phone number. Prints how long building the
//! source took and how long the import took (one transaction, committed), wall and CPU time, with
//! the rate per 1,000 users. MAS's figure: about 100 ms per 1,000 users.
//! Asserts nothing but the counts.

use std::time::Instant;

use appliance::config::Config;
use appliance::syn2mas::{self, LockMode, NoProgress, SynapseConfig, SynapseReader};
use rusqlite::{Connection, params};

/// The import tables of Synapse 1.163.2, shared with the tests.
const SCHEMA: &str = include_str!("../tests/fixtures/synapse_schema.sql");

fn build_source(path: &std::path::Path, users: usize) {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut user =
            tx.prepare("INSERT INTO users (name, password_hash, creation_ts, admin) VALUES (?1, ?2, ?3, ?4)").unwrap();
        let mut threepid = tx
            .prepare("INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at) VALUES (?1, ?2, ?3, ?4, ?4)")
            .unwrap();
        let mut device = tx
            .prepare("INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        let mut access = tx
            .prepare(
                "INSERT INTO access_tokens (id, user_id, device_id, token, valid_until_ms, last_validated, refresh_token_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .unwrap();
        let mut external = tx
            .prepare("INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES (?1, ?2, ?3)")
            .unwrap();
        let mut refresh =
            tx.prepare("INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES (?1, ?2, ?3, ?4)").unwrap();
        let base_ms = 1_700_000_000_000i64;
        let mut token_id = 0i64;
        for i in 0..users {
            let mxid = format!("@user{i}:bench.example");
            // A real bcrypt hash is 60 characters; verifying is not what this measures.
            let hash = format!("$2b$12${:0>53}", i);
            user.execute(params![mxid, hash, 1_600_000_000 + i as i64, i == 0]).unwrap();
            threepid.execute(params![mxid, "email", format!("user{i}@bench.example"), base_ms]).unwrap();
            if i % 100 == 0 {
                threepid.execute(params![mxid, "msisdn", format!("4477009{i:06}"), base_ms]).unwrap();
            }
            if i % 10 == 0 {
                external.execute(params!["oidc-github", format!("gh-{i}"), mxid]).unwrap();
            }
            device
                .execute(params![mxid, format!("DEV{i}A"), "Element", base_ms + i as i64, "192.0.2.7", "Mozilla/5.0"])
                .unwrap();
            token_id += 1;
            access
                .execute(params![
                    token_id,
                    mxid,
                    format!("DEV{i}A"),
                    format!("syt_dXNlcg_{i:020}_abcdef"),
                    None::<i64>,
                    base_ms,
                    None::<i64>
                ])
                .unwrap();
            if i % 5 == 0 {
                let dev = format!("DEV{i}B");
                device.execute(params![mxid, dev, "Element X", base_ms, "2001:db8::1", "ElementX/1.0"]).unwrap();
                token_id += 1;
                refresh.execute(params![token_id, mxid, dev, format!("syr_dXNlcg_{i:020}_abcdef")]).unwrap();
                let rt = token_id;
                token_id += 1;
                access
                    .execute(params![
                        token_id,
                        mxid,
                        dev,
                        format!("syt_dXNlcg_{i:020}_refrsh"),
                        base_ms + 300_000,
                        base_ms,
                        rt
                    ])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

/// CPU seconds (user + system) this process has used: on a shared, loaded machine the wall time
/// says more about the neighbours than about the import.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let users: usize = std::env::var("USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("homeserver.db");

    let t = Instant::now();
    build_source(&source, users);
    println!("built a synthetic Synapse database of {users} users in {:.2} s", t.elapsed().as_secs_f64());

    let hs_yaml = dir.path().join("homeserver.yaml");
    std::fs::write(
        &hs_yaml,
        format!(
            "server_name: bench.example\ndatabase: {{name: sqlite3, args: {{database: {}}}}}\npassword_config: {{pepper: bench-pepper}}\n",
            source.display()
        ),
    )
    .unwrap();
    let config = Config::parse(
        &format!(
            "database: {{path: {}}}\nmatrix: {{homeserver: bench.example, secret: bench-secret-0123456789}}\n\
             passwords:\n  schemes:\n    - {{version: 1, algorithm: bcrypt, secret: bench-pepper}}\n    - {{version: 2, algorithm: argon2id}}\n\
             upstream_oauth2:\n  providers:\n    - {{id: 01J5SYNAPSEGTHB00000000001, synapse_idp_id: oidc-github, \
             issuer: \"https://github.example/\", client_id: matrix, token_endpoint_auth_method: none, scope: openid}}\n",
            dir.path().join("appliance.db").display()
        ),
        dir.path(),
    )
    .unwrap();
    let synapse = SynapseConfig::load(&[hs_yaml]).unwrap();

    let cpu = cpu_seconds();
    let t = Instant::now();
    let mut reader = SynapseReader::open(&synapse.database, None, LockMode::Exclusive).unwrap();
    let outcome =
        syn2mas::migrate(&config, &synapse, &mut reader, syn2mas::Options::default(), 1_765_000_000, &mut NoProgress)
            .unwrap();
    let elapsed = t.elapsed();
    let cpu = cpu_seconds() - cpu;
    let c = &outcome.counts;
    assert_eq!(c.users, users as u64);
    assert_eq!(c.sessions, (users + users.div_ceil(5)) as u64);
    assert_eq!(c.upstream_links, users.div_ceil(10) as u64);
    println!(
        "imported {} users, {} passwords, {} emails, {} other 3pids, {} upstream links, {} sessions, {} access and {} \
         refresh tokens \
         in {:.2} s: {:.1} ms per 1,000 users (MAS: about 100 ms); CPU {:.2} s, {:.1} ms per 1,000 users",
        c.users,
        c.passwords,
        c.emails,
        c.unsupported_threepids,
        c.upstream_links,
        c.sessions,
        c.access_tokens,
        c.refresh_tokens,
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 * 1000.0 / users as f64,
        cpu,
        cpu * 1000.0 * 1000.0 / users as f64
    );
}

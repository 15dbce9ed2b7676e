//! Tests of the live response simulator (`mdlr_tests::sim`) itself, driven with plain
//! HTTP: a tiny std `TcpStream` client below, and `mdlr::Client` for a few reads.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use mdlr::{ActionStatus, Client, Credential, Endpoints, MachineAction};
// Percent-encodes a query value (spaces as `%20`, quotes as `%27`).
use mdlr_tests::server::percent_encode as encode;
use mdlr_tests::sim::{
    LIBRARY_UPLOAD_LIMIT, LibraryFile, OddPaging, Outcome, Quota, QuotaKind, SimConfig, SimMachine,
    Simulator,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// A tiny HTTP client

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn retry_ms(&self) -> u64 {
        self.header("x-sim-retry-after-ms")
            .and_then(|v| v.parse().ok())
            .expect("x-sim-retry-after-ms on a 429")
    }
}

/// Sends one request to `url` (`http://127.0.0.1:PORT/...`) and reads the reply.
fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let target = if target.is_empty() { "/" } else { target };
    let mut stream = TcpStream::connect(host).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("sends the head");
    stream.write_all(body).expect("sends the body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reads the reply");
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// The simulator, with the bearer token at hand.
struct Api {
    sim: Simulator,
    bearer: String,
}

impl Api {
    fn start(config: SimConfig) -> Api {
        let sim = Simulator::start(config).expect("the simulator starts");
        let bearer = format!("Bearer {}", sim.token());
        Api { sim, bearer }
    }

    fn url(&self, target: &str) -> String {
        format!("{}{target}", self.sim.api_url())
    }

    fn get(&self, target: &str) -> Reply {
        send(
            "GET",
            &self.url(target),
            &[("Authorization", &self.bearer)],
            b"",
        )
    }

    fn post(&self, target: &str, body: &Value) -> Reply {
        send(
            "POST",
            &self.url(target),
            &[
                ("Authorization", &self.bearer),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    fn start_action(&self, machine: &str, commands: Value) -> Reply {
        self.post(
            &format!("/api/machines/{machine}/runliveresponse"),
            &json!({"Commands": commands, "Comment": "sim test"}),
        )
    }

    /// Starts `commands` on `machine` and returns the action id, asserting a 201.
    #[track_caller]
    fn started(&self, machine: &str, commands: Value) -> String {
        let r = self.start_action(machine, commands);
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().expect("an id").to_owned()
    }

    fn list(&self, filter: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/machineactions?$filter={}", encode(filter)));
        assert_eq!(r.status, 200, "{filter}: {}", r.text());
        r.json()["value"].as_array().cloned().unwrap_or_default()
    }

    /// Polls (without counting API calls) until action `id` is terminal.
    #[track_caller]
    fn wait_terminal(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let a = self.sim.action(id).expect("a known action");
            let status = a["status"].as_str().unwrap_or_default();
            if ["Succeeded", "Failed", "TimeOut", "Cancelled"].contains(&status) {
                return a;
            }
            assert!(Instant::now() < deadline, "still {status}: {a}");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

fn run_script(name: &str) -> Value {
    json!([{"type": "RunScript", "params": [{"key": "ScriptName", "value": name}]}])
}

fn ids(values: &[Value]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn statuses(action: &Value) -> Vec<String> {
    action["commands"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["commandStatus"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// Scaled-down time: one service second is 10 ms.
fn fast() -> SimConfig {
    SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Authentication

#[test]
fn the_api_wants_the_bearer_token_and_the_token_endpoint_hands_it_out() {
    let api = Api::start(fast());
    let r = send("GET", &api.url("/api/machines"), &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "Unauthorized");
    assert!(
        r.json()["error"]["target"]
            .as_str()
            .is_some_and(|t| t.len() == 36)
    );
    let r = send(
        "GET",
        &api.url("/api/machines"),
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(api.get("/api/machines").status, 200);
    let stats = api.sim.stats();
    assert_eq!(stats.unauthorized, 2);
    assert_eq!(stats.api_calls, 1, "401s count against no quota");
    let log = api.sim.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 401, 200]
    );
    assert!(log.iter().all(|r| r.endpoint == "machines"));
    assert_eq!(log[0].error_code.as_deref(), Some("Unauthorized"));

    let form = b"grant_type=client_credentials&client_id=app&client_secret=s&scope=x%2F.default";
    let r = send("POST", &api.sim.token_url(), &[], form);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["access_token"], api.sim.token());
    assert_eq!(r.json()["token_type"], "Bearer");
    let r = send("POST", &api.sim.token_url(), &[], b"grant_type=password");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    assert_eq!(api.sim.stats().api_calls, 1, "tokens are not API calls");
}

// ---------------------------------------------------------------------------------------
// Quotas

#[test]
fn the_minute_quota_throttles_only_past_its_limit() {
    // 10 calls per 60 s of service time = per 0.6 s of real time.
    let api = Api::start(SimConfig {
        api_per_minute: Quota::new(10, Duration::from_secs(60)),
        ..fast()
    });
    // Paced a little slower than the quota allows: never throttled.
    let pace = api.sim.real(Duration::from_secs(6)) + Duration::from_millis(8);
    for _ in 0..15 {
        let started = Instant::now();
        assert_eq!(api.get("/api/libraryfiles").status, 200);
        thread::sleep(pace.saturating_sub(started.elapsed()));
    }
    assert_eq!(api.sim.stats().throttled, 0);

    // A burst: throttled once the window is full, with the documented headers.
    let mut ok = 0;
    let throttled = loop {
        let r = api.get("/api/libraryfiles");
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200);
        ok += 1;
        assert!(
            ok <= 10,
            "a burst of more than 10 calls in a window went through"
        );
    };
    assert_eq!(throttled.code(), "TooManyRequests");
    let wait = throttled.retry_ms();
    assert!(wait <= 600, "{wait} ms");
    // Under a second of real time: no whole-second Retry-After.
    assert_eq!(throttled.header("Retry-After"), None);
    let stats = api.sim.stats();
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.throttled_by.get(&QuotaKind::ApiPerMinute), Some(&1));
    assert_eq!(stats.api_calls, 15 + ok, "the 429 counts against nothing");
    assert_eq!(
        stats.busiest_window.get(&QuotaKind::ApiPerMinute),
        Some(&10),
        "the burst filled a window"
    );

    // Waiting as told is enough.
    thread::sleep(Duration::from_millis(wait));
    assert_eq!(api.get("/api/libraryfiles").status, 200);
}

#[test]
fn the_hour_quota_sends_retry_after_in_whole_seconds() {
    // 5 calls per hour of service time = per 36 s real.
    let api = Api::start(SimConfig {
        api_per_hour: Quota::new(5, Duration::from_secs(3600)),
        ..fast()
    });
    for _ in 0..5 {
        assert_eq!(api.get("/api/machines").status, 200);
    }
    let r = api.get("/api/machines");
    assert_eq!(r.status, 429);
    let ms = r.retry_ms();
    assert!((34_000..=36_000).contains(&ms), "{ms}");
    let secs: u64 = r
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert_eq!(secs, ms.div_ceil(1000));
    let stats = api.sim.stats();
    assert_eq!(stats.throttled_by.get(&QuotaKind::ApiPerHour), Some(&1));
    assert_eq!(stats.busiest_window.get(&QuotaKind::ApiPerHour), Some(&5));
}

#[test]
fn the_start_quota_counts_refused_starts_too() {
    let mut machines = SimMachine::many(12);
    machines[0].busy_for = Some(Duration::from_secs(3600));
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        pending_for: Duration::from_secs(600),
        // A longer window than a minute (1.2 s real) leaves room for a slow machine.
        starts_per_minute: Quota::new(10, Duration::from_secs(120)),
        ..fast()
    });
    // One refused start (busy machine) and nine good ones fill the 10-a-minute quota.
    let r = api.start_action(&machines[0].id, run_script("x.ps1"));
    assert_eq!(r.code(), "ActiveRequestAlreadyExists");
    for m in &machines[1..10] {
        api.started(&m.id, run_script("x.ps1"));
    }
    let r = api.start_action(&machines[10].id, run_script("x.ps1"));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("x-sim-quota"), Some("StartsPerMinute"));
    // Other calls are still fine: only starts are limited to 10.
    assert_eq!(api.get("/api/machineactions").status, 200);
    let wait = r.retry_ms();
    thread::sleep(Duration::from_millis(wait));
    api.started(&machines[10].id, run_script("x.ps1"));
    let stats = api.sim.stats();
    assert_eq!(stats.starts, 10);
    assert_eq!(
        stats.throttled_by.get(&QuotaKind::StartsPerMinute),
        Some(&1)
    );
    assert_eq!(
        stats.busiest_window.get(&QuotaKind::StartsPerMinute),
        Some(&10),
        "the refused start filled a place"
    );
    assert_eq!(stats.requests_to("runliveresponse"), 12);
}

#[test]
fn concurrent_sessions_are_limited_with_pending_counted() {
    let machines = SimMachine::many(3);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        max_concurrent: 2,
        ..fast()
    });
    let first = api.started(&machines[0].id, run_script("x.ps1"));
    api.started(&machines[1].id, run_script("x.ps1"));
    let r = api.start_action(&machines[2].id, run_script("x.ps1"));
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "TooManyRequests");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Maximum number of concurrent live response sessions")),
        "{}",
        r.text()
    );
    // Told to wait until the first action ends (10 s pending + 20 s running = 0.3 s).
    let wait = r.retry_ms();
    assert!(wait <= 300, "{wait}");
    thread::sleep(Duration::from_millis(wait));
    assert_eq!(
        api.sim.action(&first).expect("known")["status"],
        "Succeeded"
    );
    api.started(&machines[2].id, run_script("x.ps1"));
    let stats = api.sim.stats();
    assert_eq!(stats.peak_concurrent, 2);
    assert_eq!(stats.throttled_by.get(&QuotaKind::Concurrency), Some(&1));
    assert_eq!(stats.api_calls, 3);
}

// ---------------------------------------------------------------------------------------
// Sessions and their lifecycle

#[test]
fn one_active_action_per_machine() {
    let mut machines = SimMachine::many(2);
    machines[0].busy_for = Some(Duration::from_secs(40));
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        ..fast()
    });
    let (busy, free) = (&machines[0].id, &machines[1].id);
    let r = api.start_action(busy, run_script("x.ps1"));
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "ActiveRequestAlreadyExists")
    );
    // The running action is there to be found and waited for.
    let running = api.list(&format!("machineId eq '{busy}' and status eq 'InProgress'"));
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["requestor"], "analyst@contoso.test");
    let mine = api.started(free, run_script("x.ps1"));
    let r = api.start_action(free, run_script("x.ps1"));
    assert_eq!(r.code(), "ActiveRequestAlreadyExists");
    let theirs = running[0]["id"].as_str().expect("an id").to_owned();
    api.wait_terminal(&theirs, Duration::from_secs(5));
    api.started(busy, run_script("x.ps1"));
    api.wait_terminal(&mine, Duration::from_secs(5));
    api.started(free, run_script("x.ps1"));
    let stats = api.sim.stats();
    assert_eq!(stats.active_request_already_exists, 2);
    assert_eq!(stats.starts, 3);
    assert_eq!(stats.max_starts_per_machine(), 2);
    assert_eq!(stats.starts_per_machine.get(busy), Some(&1));
}

#[test]
fn an_action_moves_from_pending_through_in_progress_to_succeeded() {
    let machines = SimMachine::many(1);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        pending_for: Duration::from_secs(20),
        run_for: Duration::from_secs(20),
        ..fast()
    });
    let commands = json!([
        {"type": "RunScript", "params": [{"key": "ScriptName", "value": "x.ps1"}, {"key": "Args", "value": "-a 1"}]},
        {"type": "GetFile", "params": [{"key": "Path", "value": "C:\\x.log"}]},
    ]);
    let started = Instant::now();
    let r = api.start_action(&machines[0].id, commands);
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(created["status"], "Pending");
    assert_eq!(created["type"], "LiveResponse");
    assert_eq!(
        created["commands"],
        json!([]),
        "no command details while Pending"
    );
    assert_eq!(created["machineId"], machines[0].id.as_str());
    assert_eq!(created["computerDnsName"], "host0001.contoso.test");
    assert_eq!(created["requestorComment"], "sim test");
    let id = created["id"].as_str().expect("an id").to_owned();

    // Watch every state it goes through.
    let mut seen: Vec<(String, Vec<String>)> = Vec::new();
    let mut left_pending = None;
    loop {
        let a = api.sim.action(&id).expect("known");
        let state = (
            a["status"].as_str().unwrap_or_default().to_owned(),
            statuses(&a),
        );
        if state.0 != "Pending" && left_pending.is_none() {
            left_pending = Some(started.elapsed());
        }
        if seen.last() != Some(&state) {
            if state.0 == "InProgress" && state.1 == ["Created", "Created"] {
                assert!(a["commands"][0]["startTime"].is_string(), "{a}");
                assert!(a["commands"][1]["startTime"].is_null(), "{a}");
            }
            seen.push(state.clone());
        }
        if state.0 == "Succeeded" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{seen:?}");
        thread::sleep(Duration::from_millis(3));
    }
    let s = |status: &str, cmds: &[&str]| {
        (
            status.to_owned(),
            cmds.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        seen,
        [
            s("Pending", &[]),
            s("InProgress", &["Created", "Created"]),
            s("InProgress", &["Completed", "Created"]),
            s("Succeeded", &["Completed", "Completed"]),
        ]
    );
    // 20 s of service time is 0.2 s here.
    let pending = left_pending.expect("left Pending");
    assert!(pending >= Duration::from_millis(195), "{pending:?}");
    assert!(started.elapsed() >= Duration::from_millis(595));

    // The reply decodes as the library's MachineAction.
    let r = api.get(&format!("/api/machineactions/{id}"));
    let action: MachineAction = serde_json::from_slice(&r.body).expect("a MachineAction");
    assert_eq!(action.status, Some(ActionStatus::Succeeded));
    assert_eq!(action.commands.len(), 2);
    assert!(action.commands.iter().all(|c| c.end_time.is_some()));
    assert_eq!(api.get("/api/machineactions/nope").status, 404);
}

#[test]
fn every_terminal_outcome() {
    let machines = vec![
        SimMachine::new(1),
        SimMachine::new(2).with_outcome(Outcome::Failed {
            command: 1,
            errors: vec!["boom".into()],
        }),
        SimMachine::new(3).with_outcome(Outcome::TimeOut),
        SimMachine::new(4).with_outcome(Outcome::Cancelled),
    ];
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        pending_for: Duration::from_secs(10),
        run_for: Duration::from_secs(20),
        timeout_after: Duration::from_secs(50),
        cancel_after: Duration::from_secs(10),
        ..fast()
    });
    let commands = json!([
        {"type": "RunScript", "params": [{"key": "ScriptName", "value": "x.ps1"}]},
        {"type": "RunScript", "params": [{"key": "ScriptName", "value": "x.ps1"}]},
        {"type": "GetFile", "params": [{"key": "Path", "value": "C:\\a.txt"}]},
    ]);
    let ids: Vec<String> = machines
        .iter()
        .map(|m| api.started(&m.id, commands.clone()))
        .collect();
    let ended: Vec<Value> = ids
        .iter()
        .map(|id| api.wait_terminal(id, Duration::from_secs(5)))
        .collect();

    assert_eq!(ended[0]["status"], "Succeeded");
    assert_eq!(statuses(&ended[0]), ["Completed", "Completed", "Completed"]);

    assert_eq!(ended[1]["status"], "Failed");
    assert_eq!(statuses(&ended[1]), ["Completed", "Failed", "Created"]);
    assert_eq!(ended[1]["commands"][1]["errors"], json!(["boom"]));
    assert!(ended[1]["commands"][2]["startTime"].is_null());

    assert_eq!(ended[2]["status"], "TimeOut");
    assert_eq!(statuses(&ended[2]), ["Created", "Created", "Created"]);
    assert!(ended[2]["commands"][0]["startTime"].is_string());

    assert_eq!(ended[3]["status"], "Cancelled");
    assert_eq!(ended[3]["cancellationRequestor"], "analyst@contoso.test");
    assert!(ended[3]["cancellationComment"].is_string());
    assert_eq!(statuses(&ended[3]), ["Created", "Created", "Created"]);

    // A finished command has a result; the others do not.
    let link = |id: &str, n: u32| {
        api.get(&format!(
            "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})"
        ))
        .status
    };
    assert_eq!(link(&ids[1], 0), 200);
    assert_eq!(link(&ids[1], 1), 400);
    assert_eq!(link(&ids[2], 0), 400);
    assert_eq!(api.sim.stats().terminal_actions, 4);
}

#[test]
fn cancel_through_the_api() {
    let machines = SimMachine::many(2);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        max_concurrent: 1,
        ..fast()
    });
    let id = api.started(&machines[0].id, run_script("x.ps1"));
    let r = api.post(
        &format!("/api/machineactions/{id}/cancel"),
        &json!({"Comment": "wrong host"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json();
    assert_eq!(a["status"], "Cancelled");
    assert_eq!(a["cancellationRequestor"], "mdlr-app@contoso.test");
    assert_eq!(a["cancellationComment"], "wrong host");
    assert_eq!(
        api.get(&format!("/api/machineactions/{id}")).json()["status"],
        "Cancelled"
    );
    // Ended: cancelling again is refused, and the slot and the machine are free.
    let again = api.post(
        &format!("/api/machineactions/{id}/cancel"),
        &json!({"Comment": "again"}),
    );
    assert_eq!(again.status, 400);
    api.started(&machines[1].id, run_script("x.ps1"));
    let r = api.post(
        "/api/machineactions/3d1f0c55-9e2b-4a7d-8c61-0f5e2b9a7c44/cancel",
        &json!({"Comment": "x"}),
    );
    assert_eq!((r.status, r.code().as_str()), (404, "ResourceNotFound"));
    let r = api.post(&format!("/api/machineactions/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 400);
}

#[test]
fn starts_are_validated() {
    let machines = SimMachine::many(1);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        // Refused starts count against the start quota: lift it for this test.
        starts_per_minute: Quota::unlimited(),
        ..fast()
    });
    let m = &machines[0].id;
    let bad = |body: &[u8]| {
        let r = send(
            "POST",
            &api.url(&format!("/api/machines/{m}/runliveresponse")),
            &[("Authorization", &api.bearer)],
            body,
        );
        (r.status, r.code())
    };
    let invalid = (400, "InvalidRequestBody".to_owned());
    assert_eq!(bad(b"not json"), invalid);
    assert_eq!(bad(br#"{"Comment":"x"}"#), invalid);
    assert_eq!(bad(br#"{"Commands":[]}"#), invalid);
    assert_eq!(bad(br#"{"commands":[{"type":"RunScript","params":[{"key":"ScriptName","value":"x.ps1"}]}]}"#), invalid);
    assert_eq!(
        bad(br#"{"Commands":[{"type":"Reboot","params":[]}]}"#),
        invalid
    );
    assert_eq!(
        bad(br#"{"Commands":[{"type":"RunScript","params":[]}]}"#),
        invalid
    );
    assert_eq!(
        bad(br#"{"Commands":[{"type":"GetFile","params":[{"key":"Path","value":"C:\\x"}]},{"type":"RunScript","params":[{"key":"ScriptName","value":"x.ps1"}]}]}"#),
        invalid
    );
    assert_eq!(
        bad(br#"{"Commands":[{"type":"RunScript","params":[{"key":"ScriptName","value":"x.ps1"}]},{"type":"PutFile","params":[{"key":"FileName","value":"x.ps1"}]}]}"#),
        invalid
    );
    let r = api.start_action(&"0".repeat(40), run_script("x.ps1"));
    assert_eq!((r.status, r.code().as_str()), (404, "ResourceNotFound"));
    let r = api.start_action("host0001", run_script("x.ps1"));
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidInput"));
    let r = api.start_action(m, run_script("missing.ps1"));
    assert_eq!((r.status, r.code().as_str()), (400, "BadRequest"));
    let r = api.get(&format!("/api/machines/{m}/runliveresponse"));
    assert_eq!(r.status, 405);
    assert_eq!(api.sim.stats().starts, 0);
    // Uppercase hex is the same machine.
    api.started(&m.to_ascii_uppercase(), run_script("x.ps1"));
}

// ---------------------------------------------------------------------------------------
// Reads: filters and pages

#[test]
fn filters_of_the_shapes_clients_send() {
    let mut machines = SimMachine::many(3);
    machines[0].busy_for = Some(Duration::from_secs(3600));
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        pending_for: Duration::from_secs(3600),
        ..fast()
    });
    let (m1, m2, m3) = (&machines[0].id, &machines[1].id, &machines[2].id);
    let a2 = api.started(m2, run_script("x.ps1"));
    let a3 = api.started(m3, run_script("x.ps1"));
    let busy = api.list(&format!("machineId eq '{m1}'"));
    assert_eq!(busy.len(), 1);
    let a1 = busy[0]["id"].as_str().expect("id").to_owned();

    let by_id = api.list(&format!("id eq '{a1}' or id eq '{a3}' or id eq 'nope'"));
    assert_eq!(ids(&by_id), BTreeSet::from([a1.clone(), a3.clone()]));
    // Spaces as '+', quotes as they are: the same.
    let raw = format!("/api/machineactions?$filter=id+eq+'{a2}'+or+id+eq+%27{a3}%27");
    let r = api.get(&raw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        ids(r.json()["value"].as_array().expect("value")),
        BTreeSet::from([a2.clone(), a3.clone()])
    );

    let running = api.list(&format!("machineId eq '{m1}' and status eq 'InProgress'"));
    assert_eq!(ids(&running), BTreeSet::from([a1.clone()]));
    assert!(
        api.list(&format!("machineId eq '{m2}' and status eq 'InProgress'"))
            .is_empty()
    );
    let pending = api.list(&format!(
        "(machineId eq '{m2}' or machineId eq '{m3}') and status eq 'Pending'"
    ));
    assert_eq!(ids(&pending), BTreeSet::from([a2.clone(), a3.clone()]));
    // As mdlr's ActionQuery writes it.
    let q = format!(
        "(id eq '{a1}' or id eq '{a2}') and (status eq 'InProgress' or status eq 'Pending') and type eq 'LiveResponse'"
    );
    assert_eq!(api.list(&q).len(), 2);
    assert_eq!(api.list("requestor eq 'analyst@contoso.test'").len(), 1);
    assert_eq!(api.list("type eq 'LiveResponse'").len(), 3);
    assert_eq!(api.list("status ne 'Pending'").len(), 1);

    for bad in [
        "id eq",
        "id eq 'a' and",
        "(id eq 'a'",
        "computerDnsName eq 'x'",
    ] {
        let r = api.get(&format!("/api/machineactions?$filter={}", encode(bad)));
        assert_eq!((r.status, r.code().as_str()), (400, "ODataError"), "{bad}");
    }

    // Machines by name, by id; nothing found is a 404 by default.
    let r = api.get(&format!(
        "/api/machines?$filter={}",
        encode("computerDnsName eq 'host0002.contoso.test'")
    ));
    assert_eq!(r.status, 200);
    let found = r.json()["value"].as_array().cloned().expect("value");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], m2.as_str());
    for field in ["osPlatform", "healthStatus", "lastSeen"] {
        assert!(found[0][field].is_string(), "{field}");
    }
    let r = api.get(&format!(
        "/api/machines?$filter={}",
        encode("computerDnsName eq 'nosuch.contoso.test'")
    ));
    assert_eq!((r.status, r.code().as_str()), (404, "ResourceNotFound"));
    assert_eq!(
        api.get(&format!("/api/machines/{m3}")).json()["computerDnsName"],
        "host0003.contoso.test"
    );
    assert_eq!(
        api.get(&format!("/api/machines/{}", "f".repeat(40))).status,
        404
    );
    assert_eq!(
        api.get("/api/machines").json()["value"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[test]
fn lists_page_with_next_links() {
    let machines = SimMachine::many(5);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        pending_for: Duration::from_secs(3600),
        ..fast()
    });
    let started: BTreeSet<String> = machines
        .iter()
        .map(|m| api.started(&m.id, run_script("x.ps1")))
        .collect();
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    let mut next = Some(format!(
        "/api/machineactions?$filter={}&$top=2",
        encode("type eq 'LiveResponse'")
    ));
    while let Some(target) = next.take() {
        let r = api.get(&target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let page = r.json();
        let values = page["value"].as_array().cloned().expect("value");
        assert!(values.len() <= 2);
        seen.extend(ids(&values));
        pages += 1;
        if let Some(link) = page["@odata.nextLink"].as_str() {
            assert!(
                link.contains("$filter=type%20eq%20%27LiveResponse%27"),
                "{link}"
            );
            next = Some(
                link.strip_prefix(&api.sim.api_url())
                    .expect("a link to this server")
                    .to_owned(),
            );
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, started);
    let all = api.get("/api/machineactions?$top=10000").json();
    assert_eq!(all["value"].as_array().map(Vec::len), Some(5));
    assert!(all.get("@odata.nextLink").is_none());
    assert_eq!(
        api.get("/api/machineactions?$top=10001").code(),
        "ODataError"
    );
    assert_eq!(api.get("/api/machineactions?$top=many").status, 400);
    let skipped = api.get("/api/machineactions?$top=2&$skip=4").json();
    assert_eq!(skipped["value"].as_array().map(Vec::len), Some(1));
}

/// The pages of `target` and those its `@odata.nextLink`s lead to, up to `most`: each
/// page's ids and its link (relative to the API).
fn pages(api: &Api, target: &str, most: usize) -> Vec<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut next = Some(target.to_owned());
    while let Some(t) = next.take().filter(|_| out.len() < most) {
        let r = api.get(&t);
        assert_eq!(r.status, 200, "{t}: {}", r.text());
        let page = r.json();
        let values = page["value"].as_array().cloned().unwrap_or_default();
        let link = page["@odata.nextLink"].as_str().map(|l| {
            l.strip_prefix(&api.sim.api_url())
                .expect("a link to this server")
                .to_owned()
        });
        let ids = values
            .iter()
            .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        out.push((ids, link.clone()));
        next = link;
    }
    out
}

#[test]
fn stricter_and_odder_lists() {
    let machines = SimMachine::many(5);
    let ids: Vec<String> = machines.iter().map(|m| m.id.clone()).collect();
    let odd = |odd: OddPaging| {
        Api::start(SimConfig {
            machines: machines.clone(),
            odd_paging: odd,
            ..fast()
        })
    };
    let all = "/api/machines?$top=10";
    // Pages of two, whatever $top asks.
    let api = odd(OddPaging {
        page_size: Some(2),
        ..OddPaging::default()
    });
    let got = pages(&api, all, 10);
    let shown: Vec<&[String]> = got.iter().map(|(ids, _)| ids.as_slice()).collect();
    assert_eq!(shown, [&ids[0..2], &ids[2..4], &ids[4..5]]);
    assert_eq!(got[0].1.as_deref(), Some("/api/machines?$top=10&$skip=2"));
    // An empty second page, whose link goes on.
    let api = odd(OddPaging {
        page_size: Some(2),
        empty_page: true,
        ..OddPaging::default()
    });
    let got = pages(&api, all, 10);
    let shown: Vec<&[String]> = got.iter().map(|(ids, _)| ids.as_slice()).collect();
    assert_eq!(shown, [&ids[0..2], &[], &ids[2..4], &ids[4..5]]);
    // The second page links to itself.
    let api = odd(OddPaging {
        page_size: Some(2),
        repeat_link: true,
        ..OddPaging::default()
    });
    let got = pages(&api, all, 4);
    assert_eq!(got[2], got[1]);
    assert_eq!(got[1].1.as_deref(), Some("/api/machines?$top=10&$skip=2"));
    // Links without the filter; pages that repeat the last item before them.
    let api = odd(OddPaging {
        page_size: Some(2),
        drop_filter: true,
        overlap: true,
        ..OddPaging::default()
    });
    let filtered = format!(
        "/api/machines?$filter={}&$top=10",
        encode("healthStatus eq 'Active'")
    );
    let got = pages(&api, &filtered, 10);
    assert_eq!(got[0].1.as_deref(), Some("/api/machines?$top=10&$skip=2"));
    let shown: Vec<&[String]> = got.iter().map(|(ids, _)| ids.as_slice()).collect();
    assert_eq!(shown, [&ids[0..2], &ids[1..4], &ids[3..5]]);

    // `or` refused; action lists without commands, and empty ones as 404.
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        refuse_or_filters: true,
        list_without_commands: true,
        empty_action_list_as_404: true,
        pending_for: Duration::ZERO,
        ..fast()
    });
    let r = api.get(&format!(
        "/api/machines?$filter={}",
        encode(&format!("id eq '{}' or id eq '{}'", ids[0], ids[1]))
    ));
    assert_eq!((r.status, r.code().as_str()), (400, "ODataError"));
    assert!(r.text().contains("'Or' is not allowed"), "{}", r.text());
    let r = api.get("/api/machineactions?$filter=id%20eq%20%27a%27");
    assert_eq!((r.status, r.code().as_str()), (404, "ResourceNotFound"));
    let a = api.started(&ids[0], run_script("x.ps1"));
    let listed = api.list(&format!("id eq '{a}'"));
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("commands").is_none(), "{}", listed[0]);
    let one = api.get(&format!("/api/machineactions/{a}")).json();
    assert_eq!(one["commands"].as_array().map(Vec::len), Some(1));
}

// ---------------------------------------------------------------------------------------
// Results

#[test]
fn result_links_and_the_result_host() {
    let mut m = SimMachine::new(1);
    m.script_output = Some("hello\n".into());
    m.script_errors = "a warning\n".into();
    m.script_exit_code = 3;
    let hosts = "127.0.0.1 localhost\n".repeat(100);
    m.files = vec![(
        "C:\\Windows\\System32\\drivers\\etc\\hosts".into(),
        hosts.clone().into_bytes(),
    )];
    let api = Api::start(SimConfig {
        machines: vec![m.clone()],
        pending_for: Duration::from_secs(10),
        run_for: Duration::from_secs(10),
        ..fast()
    });
    let id = api.started(
        &m.id,
        json!([
            {"type": "PutFile", "params": [{"key": "FileName", "value": "x.ps1"}]},
            {"type": "RunScript", "params": [{"key": "ScriptName", "value": "x.ps1"}, {"key": "Args", "value": "-a 1"}]},
            {"type": "GetFile", "params": [{"key": "Path", "value": "C:\\Windows\\System32\\drivers\\etc\\hosts"}]},
        ]),
    );
    let link = |n: u32| {
        api.get(&format!(
            "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})"
        ))
    };
    let early = link(1);
    assert_eq!((early.status, early.code().as_str()), (400, "BadRequest"));
    api.wait_terminal(&id, Duration::from_secs(5));
    assert_eq!(link(0).code(), "BadRequest", "PutFile has no result");
    assert_eq!(link(7).status, 404);
    let encoded = api.get(&format!(
        "/api/machineactions/{id}/GetLiveResponseResultDownloadLink%28index%3D1%29"
    ));
    assert_eq!(encoded.status, 404, "the parentheses must arrive literally");

    let r = link(1);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(
        body["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("#Edm.String"))
    );
    let url = body["value"].as_str().expect("a link").to_owned();
    assert!(
        url.starts_with(&format!("{}/blob/", api.sim.api_url())),
        "{url}"
    );
    for part in ["se=", "&sp=r", "&sv=2019-07-07", "&sr=b", "&sig="] {
        assert!(url.contains(part), "{url} lacks {part}");
    }
    let r = send("GET", &url, &[], b"");
    assert_eq!(r.status, 200);
    let transcript = r.json();
    assert_eq!(
        transcript,
        json!({"script_name": "x.ps1", "exit_code": 3, "script_output": "hello\n", "script_errors": "a warning\n"})
    );
    // Never with the bearer token.
    let r = send("GET", &url, &[("Authorization", &api.bearer)], b"");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("x-ms-error-code"),
        Some("InvalidAuthenticationInfo")
    );
    // A signature it did not issue.
    let forged = format!("{}sig=AAAA", &url[..url.find("sig=").expect("sig")]);
    let r = send("GET", &forged, &[], b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-ms-error-code"), Some("AuthenticationFailed"));
    assert!(r.text().contains("<Code>AuthenticationFailed</Code>"));

    let file_url = link(2).json()["value"].as_str().expect("a link").to_owned();
    let r = send("GET", &file_url, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Disposition"),
        Some("attachment; filename=\"hosts.gz\"")
    );
    assert_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(gunzip(&r.body), hosts.as_bytes());
    let whole = r.body;
    let r = send("GET", &file_url, &[("Range", "bytes=10-")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, whole[10..]);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes 10-{}/{}", whole.len() - 1, whole.len()).as_str())
    );
    let r = send(
        "GET",
        &file_url,
        &[("Range", &format!("bytes={}-", whole.len()))],
        b"",
    );
    assert_eq!(r.status, 416);

    // The log never holds a signature.
    let sig = url.split("sig=").nth(1).expect("sig");
    assert!(api.sim.requests().iter().all(|r| !r.target.contains(sig)));
    let stats = api.sim.stats();
    assert_eq!(stats.blob_requests, 6);
    assert_eq!(stats.blob_refusals, 2);
    assert_eq!(stats.starts, 1);
}

#[test]
fn result_links_expire() {
    let machines = SimMachine::many(1);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        pending_for: Duration::from_secs(1),
        run_for: Duration::from_secs(1),
        link_ttl: Duration::from_secs(30),
        ..fast()
    });
    let id = api.started(&machines[0].id, run_script("x.ps1"));
    api.wait_terminal(&id, Duration::from_secs(5));
    let target = format!("/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=0)");
    let url = api.get(&target).json()["value"]
        .as_str()
        .expect("link")
        .to_owned();
    assert_eq!(send("GET", &url, &[], b"").status, 200);
    thread::sleep(api.sim.real(Duration::from_secs(31)));
    let r = send("GET", &url, &[], b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-ms-error-code"), Some("AuthenticationFailed"));
    assert!(r.text().contains("AuthenticationFailed"));
    // A fresh link works again; nothing ran again.
    let fresh = api.get(&target).json()["value"]
        .as_str()
        .expect("link")
        .to_owned();
    assert_ne!(fresh, url);
    let r = send("GET", &fresh, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["script_output"], "host0001.contoso.test: x.ps1\n");
    assert_eq!(api.sim.stats().starts, 1);
}

#[test]
fn the_mdlr_client_reads_what_the_simulator_serves() {
    let mut machines = SimMachine::many(1);
    machines[0].script_output = Some("from the simulator\n".into());
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        pending_for: Duration::from_secs(1),
        run_for: Duration::from_secs(1),
        ..fast()
    });
    let id = api.started(&machines[0].id, run_script("x.ps1"));
    api.wait_terminal(&id, Duration::from_secs(5));
    let client = Client::builder(Credential::token(api.sim.token()))
        .endpoints(Endpoints::default().with_api_base(&format!("{}/api", api.sim.api_url())))
        .build()
        .expect("a client");
    let action = client.action(&id).expect("the action");
    assert_eq!(action.status, Some(ActionStatus::Succeeded));
    assert_eq!(
        action.computer_dns_name.as_deref(),
        Some("host0001.contoso.test")
    );
    let transcript = client.transcript(&id, 0).expect("the transcript");
    assert_eq!(transcript.script_output, "from the simulator\n");
    assert_eq!(transcript.exit_status(), 0);
}

// ---------------------------------------------------------------------------------------
// Library

fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----simtestBOUNDARY7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn library_upload_list_and_delete() {
    let machines = SimMachine::many(1);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        library: vec![LibraryFile::new("x.ps1", b"x")],
        ..fast()
    });
    let upload = |fields: &[(&str, Option<&str>, &[u8])]| {
        let (ct, body) = multipart(fields);
        send(
            "POST",
            &api.url("/api/libraryfiles"),
            &[("Authorization", &api.bearer), ("Content-Type", &ct)],
            &body,
        )
    };
    let names = || -> Vec<String> {
        api.get("/api/libraryfiles").json()["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|f| f["fileName"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(names(), ["x.ps1"]);
    let r = api.start_action(&machines[0].id, run_script("collect.ps1"));
    assert_eq!((r.status, r.code().as_str()), (400, "BadRequest"));

    let r = upload(&[
        ("file", Some("collect.ps1"), b"abc"),
        ("Description", None, b"Collects things"),
        ("ParametersDescription", None, b"-Path <dir>"),
        ("HasParameters", None, b"true"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    let entity = r.json();
    assert_eq!(entity["fileName"], "collect.ps1");
    assert_eq!(
        entity["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(entity["description"], "Collects things");
    assert_eq!(entity["hasParameters"], true);
    assert_eq!(entity["parametersDescription"], "-Path <dir>");
    for field in ["creationTime", "lastUpdatedTime", "createdBy"] {
        assert!(entity[field].is_string(), "{field}");
    }
    assert_eq!(names(), ["collect.ps1", "x.ps1"]);

    let again = upload(&[
        ("file", Some("collect.ps1"), b"def"),
        ("Description", None, b"d"),
    ]);
    assert_eq!((again.status, again.code().as_str()), (400, "BadRequest"));
    let replaced = upload(&[
        ("file", Some("collect.ps1"), b""),
        ("Description", None, b"d"),
        ("OverrideIfExists", None, b"true"),
    ]);
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(
        replaced.json()["sha256"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let r = upload(&[("file", Some("y.ps1"), b"y")]);
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MissingRequiredParameter")
    );
    let r = api.post("/api/libraryfiles", &json!({"file": "nope"}));
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidRequestBody"));

    api.started(&machines[0].id, run_script("collect.ps1"));
    let delete = |name: &str| {
        send(
            "DELETE",
            &api.url(&format!("/api/libraryfiles/{name}")),
            &[("Authorization", &api.bearer)],
            b"",
        )
    };
    let r = delete("collect.ps1");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(delete("collect.ps1").code(), "ResourceNotFound");
    assert_eq!(names(), ["x.ps1"]);
}

#[test]
fn library_uploads_keep_to_the_documented_names_and_size() {
    let api = Api::start(fast());
    let upload = |name: &str, data: &[u8]| {
        let (ct, body) = multipart(&[("file", Some(name), data), ("Description", None, b"d")]);
        send(
            "POST",
            &api.url("/api/libraryfiles"),
            &[("Authorization", &api.bearer), ("Content-Type", &ct)],
            &body,
        )
    };
    for bad in ["collect data.ps1", "données.ps1", "a+b.sh", "x(1).exe"] {
        let r = upload(bad, b"x");
        assert_eq!((r.status, r.code().as_str()), (400, "BadRequest"), "{bad}");
        assert!(
            r.text().contains("only letters, digits, '-', '_' and '.'"),
            "{}",
            r.text()
        );
    }
    let r = upload("Get-Thing_v2.ps1", b"x");
    assert_eq!(r.status, 200, "{}", r.text());

    let big = vec![b'a'; LIBRARY_UPLOAD_LIMIT + 1];
    let r = upload("big.bin", &big);
    assert_eq!((r.status, r.code().as_str()), (400, "BadRequest"));
    assert!(r.text().contains("20MB (20971520 bytes)"), "{}", r.text());
    let r = upload("big.bin", &big[1..]);
    assert_eq!(r.status, 200, "{}", r.text());
}

// ---------------------------------------------------------------------------------------
// The server under load and abuse

#[test]
fn hundreds_of_concurrent_clients_and_malformed_requests() {
    let api = Api::start(SimConfig {
        api_per_minute: Quota::unlimited(),
        api_per_hour: Quota::unlimited(),
        max_body: 4096,
        ..fast()
    });
    let url = api.url("/api/machines");
    let bearer = api.bearer.clone();
    let threads: Vec<_> = (0..300)
        .map(|_| {
            let (url, bearer) = (url.clone(), bearer.clone());
            thread::spawn(move || send("GET", &url, &[("Authorization", &bearer)], b"").status)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("a client thread"), 200);
    }
    assert_eq!(api.sim.stats().api_calls, 300);

    let raw = |bytes: &[u8]| -> Vec<u8> {
        let addr = api.sim.api_url().trim_start_matches("http://").to_owned();
        let mut s = TcpStream::connect(addr).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(bytes).expect("sends");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    assert!(raw(b"NONSENSE\r\n\r\n").starts_with(b"HTTP/1.1 400 "));
    assert!(
        raw(b"GET /api/machines HTTP/1.1\r\nBroken header\r\n\r\n").starts_with(b"HTTP/1.1 400 ")
    );
    assert!(
        raw(b"GET /api/machines HTTP/1.1\r\nContent-Length: x\r\n\r\n")
            .starts_with(b"HTTP/1.1 400 ")
    );
    assert!(raw(b"GET /api/mach").starts_with(b"HTTP/1.1 400 "));
    let big = format!(
        "POST /api/libraryfiles HTTP/1.1\r\nAuthorization: {bearer}\r\nContent-Length: 100000\r\n\r\n"
    );
    assert!(raw(big.as_bytes()).starts_with(b"HTTP/1.1 413 "));
    // A chunked body (grant_type=client_credentials&client_id=app) is read whole.
    let chunked = b"POST /t/oauth2/v2.0/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        b\r\ngrant_type=\r\n1e\r\nclient_credentials&client_id=a\r\n2;ext=1\r\npp\r\n0\r\n\r\n";
    let reply = raw(chunked);
    assert!(
        reply.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    // Still serving.
    assert_eq!(api.get("/api/machines").status, 200);
}

// ---------------------------------------------------------------------------------------
// Machines, the bound and an ideal client

#[test]
fn machines_are_deterministic() {
    let a = SimMachine::many(1000);
    assert_eq!(a, SimMachine::many(1000));
    assert_eq!(a[0].dns_name, "host0001.contoso.test");
    assert_eq!(a[999].dns_name, "host1000.contoso.test");
    let ids: BTreeSet<&str> = a.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 1000);
    assert!(a.iter().all(|m| {
        m.id.len() == 40
            && m.id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }));
    let bad = SimConfig {
        machines: vec![SimMachine {
            id: "xyz".into(),
            ..SimMachine::new(1)
        }],
        ..fast()
    };
    assert!(Simulator::start(bad).is_err());
    assert!(
        Simulator::start(SimConfig {
            time_scale: 0.0,
            ..fast()
        })
        .is_err()
    );
}

#[test]
fn the_quota_bound() {
    let s = Duration::from_secs;
    let config = SimConfig {
        machines: SimMachine::many(1000),
        ..SimConfig::default()
    };
    // 10 s pending + 20 s per command; 10 starts a minute.
    assert_eq!(config.quota_bound(1, 1), s(30));
    assert_eq!(config.quota_bound(10, 1), s(30));
    assert_eq!(config.quota_bound(11, 1), s(90));
    assert_eq!(config.quota_bound(200, 1), s(19 * 60 + 30));
    assert_eq!(config.quota_bound(1000, 3), s(99 * 60 + 70));
    // Concurrency binds when actions are long: 2 at a time, 100 s each.
    let narrow = SimConfig {
        max_concurrent: 2,
        pending_for: s(0),
        run_for: s(100),
        ..config.clone()
    };
    assert_eq!(narrow.quota_bound(4, 1), s(200));
    assert_eq!(narrow.quota_bound(5, 1), s(300));
    // The hourly API budget binds when it is the smaller.
    let hourly = SimConfig {
        api_per_hour: Quota::new(3, s(3600)),
        ..config.clone()
    };
    assert_eq!(hourly.quota_bound(4, 1), s(3600 + 30));
    // Outcomes end at different times.
    let mixed = SimConfig {
        machines: vec![
            SimMachine::new(1).with_outcome(Outcome::failed(0)),
            SimMachine::new(2).with_outcome(Outcome::TimeOut),
        ],
        ..config
    };
    assert_eq!(mixed.quota_bound(1, 3), s(30));
    assert_eq!(mixed.quota_bound(2, 3), s(610));
}

#[test]
fn an_ideal_client_meets_the_bound_without_breaking_a_quota() {
    // 30 machines, 10 starts a minute: three rounds of starts. Scaled: 1 s is 10 ms.
    let n = 30;
    let machines = SimMachine::many(n);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        ..fast()
    });
    let bound = api.sim.quota_bound(n, 1);
    assert_eq!(bound, Duration::from_secs(150));
    // Starts every machine as soon as it may, waiting exactly as told by a 429.
    for m in &machines {
        loop {
            let r = api.start_action(&m.id, run_script("x.ps1"));
            if r.status == 201 {
                break;
            }
            assert_eq!(r.status, 429, "{}", r.text());
            thread::sleep(Duration::from_millis(r.retry_ms()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.sim.stats().terminal_actions < n {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    let stats = api.sim.stats();
    let makespan = stats.makespan_service().expect("a makespan");
    assert!(
        makespan >= bound.mul_f64(0.99),
        "{makespan:?} beat the bound {bound:?}"
    );
    assert!(makespan <= bound.mul_f64(1.10), "{makespan:?} vs {bound:?}");
    assert_eq!(stats.starts, n);
    assert_eq!(stats.max_starts_per_machine(), 1);
    assert_eq!(
        stats.throttled_by.keys().copied().collect::<Vec<_>>(),
        [QuotaKind::StartsPerMinute]
    );
}

/// The simulator at benchmark scale: 1000 machines, 1000 s of service time a second,
/// 25 client threads that start, poll with list queries and fetch every result.
/// `cargo test -p mdlr-tests --test sim -- --ignored --nocapture` (about 10 s).
#[test]
#[ignore = "slow: 10 s; cargo xtask test --slow"]
fn a_thousand_machines_with_many_client_threads() {
    let n = 1000;
    let machines = SimMachine::many(n);
    let api = std::sync::Arc::new(Api::start(SimConfig {
        machines: machines.clone(),
        time_scale: 0.001,
        api_per_hour: Quota::unlimited(),
        api_per_minute: Quota::unlimited(),
        ..SimConfig::default()
    }));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..25)
        .map(|_| {
            let (api, next, machines) = (api.clone(), next.clone(), machines.clone());
            thread::spawn(move || {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(m) = machines.get(k) else { return };
                    let id = loop {
                        let r = api.start_action(&m.id, run_script("x.ps1"));
                        if r.status == 201 {
                            break r.json()["id"].as_str().expect("id").to_owned();
                        }
                        assert_eq!(r.status, 429, "{}", r.text());
                        thread::sleep(Duration::from_millis(r.retry_ms()));
                    };
                    loop {
                        let found = api.list(&format!("id eq '{id}'"));
                        if found[0]["status"] == "Succeeded" {
                            break;
                        }
                        thread::sleep(api.sim.real(Duration::from_secs(5)));
                    }
                    let r = api.get(&format!(
                        "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=0)"
                    ));
                    let url = r.json()["value"].as_str().expect("link").to_owned();
                    assert_eq!(send("GET", &url, &[], b"").status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread");
    }
    let stats = api.sim.stats();
    let bound = api.sim.quota_bound(n, 1);
    let makespan = stats.makespan_service().expect("makespan");
    println!(
        "{n} machines: makespan {makespan:?} (service), bound {bound:?}, ratio {:.3}, {} API calls, 429s {:?}, peak {}",
        makespan.as_secs_f64() / bound.as_secs_f64(),
        stats.api_calls,
        stats.throttled_by,
        stats.peak_concurrent
    );
    assert_eq!(stats.starts, n);
    assert_eq!(stats.max_starts_per_machine(), 1);
    assert!(makespan >= bound.mul_f64(0.99));
}

// ---------------------------------------------------------------------------------------
// Investigation packages (SPEC A7)

/// A collection is an action with no commands; a second one on the same machine is
/// refused while the first runs (a live response session is not); its link is refused
/// until it has succeeded, then serves a zip that Python's zipfile reads; the link call
/// has its own quota of 2 a minute (the API's allow far more).
#[test]
fn investigation_packages_have_a_link_quota_of_their_own() {
    let machines = SimMachine::many(2);
    let api = Api::start(SimConfig {
        machines: machines.clone(),
        // Long enough windows for a loaded machine: 2 links in 6 s real.
        package_links_per_minute: Quota::new(2, Duration::from_secs(600)),
        ..fast()
    });
    let collect = |m: &str| {
        api.post(
            &format!("/api/machines/{m}/collectInvestigationPackage"),
            &json!({"Comment": "case 42"}),
        )
    };
    let r = collect(&machines[0].id);
    assert_eq!(r.status, 201, "{}", r.text());
    let action = r.json();
    assert_eq!(action["type"], "CollectInvestigationPackage");
    assert_eq!(action["requestorComment"], "case 42");
    assert_eq!(action["commands"], json!([]));
    let id = action["id"].as_str().expect("an id").to_owned();
    let again = collect(&machines[0].id);
    assert_eq!(
        again.code(),
        "ActiveRequestAlreadyExists",
        "{}",
        again.text()
    );
    api.started(&machines[0].id, run_script("x.ps1"));
    let no_comment = api.post(
        &format!(
            "/api/machines/{}/collectInvestigationPackage",
            machines[1].id
        ),
        &json!({}),
    );
    assert_eq!(no_comment.code(), "MissingRequiredParameter");

    let link = |id: &str| api.get(&format!("/api/machineactions/{id}/GetPackageUri"));
    let early = link(&id);
    assert_eq!((early.status, early.code()), (400, "BadRequest".to_owned()));
    let done = api.wait_terminal(&id, Duration::from_secs(10));
    assert_eq!(done["status"], "Succeeded");
    // The early call counted: one more fits in the window, then 429.
    let r = link(&id);
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["value"].as_str().expect("a link").to_owned();
    let throttled = link(&id);
    assert_eq!(throttled.status, 429, "{}", throttled.text());
    assert_eq!(
        throttled.header("x-sim-quota"),
        Some("PackageLinksPerMinute")
    );
    // Other API calls are not limited by it.
    assert_eq!(api.get("/api/machineactions").status, 200);

    let blob = send("GET", &url, &[], b"");
    assert_eq!(blob.status, 200);
    assert_eq!(blob.header("content-disposition"), None);
    assert_eq!(blob.body, machines[0].package());
    let dir = std::env::temp_dir().join(format!("mdlr-sim-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    let zip = dir.join("package.zip");
    std::fs::write(&zip, &blob.body).expect("write the zip");
    let check = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(*z.namelist(), sep='\\n')"])
        .arg(&zip)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "README.txt\nProcesses/processes.csv\nPrefetch files/prefetch.bin\n"
    );
    let stats = api.sim.stats();
    assert_eq!(stats.package_starts, 1);
    assert_eq!(stats.starts, 1, "the session was not refused");
    assert_eq!(
        stats.throttled_by.get(&QuotaKind::PackageLinksPerMinute),
        Some(&1)
    );
    assert_eq!(
        stats.busiest_window.get(&QuotaKind::PackageLinksPerMinute),
        Some(&2)
    );
}

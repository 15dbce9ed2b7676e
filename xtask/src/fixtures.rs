//! The test fixtures in `tests/fixtures/`, generated from mdlr's own wire types.
//!
//! `cargo xtask fixtures` writes them; `tests/tests/fixtures.rs` includes this very file
//! (`#[path]`) and fails when the files on disk differ. So this file depends only on
//! `mdlr`, `serde_json` and `std`, and everything in it is deterministic: fixed ids,
//! fixed timestamps, pretty JSON with a trailing newline.
//!
//! JSON built with `json!` lists its keys in sorted order, so the output is the same
//! whether or not serde_json's `preserve_order` feature is on in a given build.

use mdlr::{ActionStatus, Command, CommandEntry, CommandStatus, CommandType, MachineAction, Param};
use serde_json::{Value, json};

/// The placeholder for the result host in `links/*.json`: scheme, host and port, no
/// trailing slash. Tests and the demo replace it with their stand-in's base URL.
pub const BLOB: &str = "{{BLOB}}";

/// A result the stand-in service serves: command `index` of the action in fixture
/// `action` has the result in fixture `content`, behind the link in fixture `link`.
/// RunScript contents are transcripts, served as they are; GetFile contents are the
/// collected files, served gzipped with `Content-Disposition: attachment;
/// filename="<name>.gz"` (the name is the last part of the command's `Path`).
pub struct Served {
    /// The machine action fixture.
    pub action: &'static str,
    /// The command's index in the action.
    pub index: u32,
    /// The link reply fixture.
    pub link: &'static str,
    /// The result content fixture.
    pub content: &'static str,
    /// The blob's path on the result host (after the placeholder).
    path: &'static str,
    /// The link's expiry (`se`, percent-encoded).
    expires: &'static str,
    /// The link's signature (`sig`, percent-encoded): tests check it never shows.
    sig: &'static str,
}

/// Every result the fixtures describe, and where it is served.
pub const SERVED: &[Served] = &[
    Served {
        action: "actions/runscript-succeeded.json",
        index: 0,
        link: "links/runscript-succeeded-0.json",
        content: "transcripts/seed.json",
        // The seed page's own link, host replaced.
        path: "/investigation-actions-data/ID/CustomPlaybookCommandOutput/4ed5e7807ad1fe59b00b664fe06a0f07",
        expires: "2021-02-04T16%3A13%3A50Z",
        sig: "1dYGe9rPvUlXBPvYSmr6/OLXPY98m8qWqfIQCBbyZTY%3D",
    },
    Served {
        action: "actions/runscript-script-error.json",
        index: 0,
        link: "links/runscript-script-error-0.json",
        content: "transcripts/script-error.json",
        path: "/investigation-actions-data/8AD99F2D-E9D4-4100-B413-4AB464660C20/CustomPlaybookCommandOutput/15f4a9f894e739a599c3448dc508308a",
        expires: "2021-02-05T09%3A52%3A11Z",
        sig: "yHFrX2f0B4NHDUTTU12soGO2RZZ0TzOtxwhAvZd1TU8%3D",
    },
    Served {
        action: "actions/getfile-succeeded.json",
        index: 0,
        link: "links/getfile-succeeded-0.json",
        content: "files/hosts",
        path: "/investigation-actions-data/0C2162C2-1A39-448B-8222-D11658B258F8/CustomPlaybookCommandOutput/a770d2a94a3fa53bc8563359b6304374",
        expires: "2021-02-05T10%3A31%3A02Z",
        sig: "i8BLb1bnddxKjob0%2Bu4hYuey%2Fr6aSXCzGe4oo5YGy8g%3D",
    },
    Served {
        action: "actions/chain-succeeded.json",
        index: 1,
        link: "links/chain-succeeded-1.json",
        content: "transcripts/bom-crlf-non-ascii.json",
        path: "/investigation-actions-data/8F3545EF-8519-4D60-9887-BB4EB74269E6/CustomPlaybookCommandOutput/c0d25e7bf69258200e59534b10d8c932",
        expires: "2021-02-05T11%3A17%3A40Z",
        sig: "HuPybIOxBkoDIL1QKlCzyF6fvf69QTKEsDYq7hBxgAY%3D",
    },
    Served {
        action: "actions/chain-succeeded.json",
        index: 2,
        link: "links/chain-succeeded-2.json",
        content: "files/collect.txt",
        path: "/investigation-actions-data/8F3545EF-8519-4D60-9887-BB4EB74269E6/CustomPlaybookCommandOutput/c60ba6a3aae5e96cfe3df9b9406c6790",
        expires: "2021-02-05T11%3A17%3A41Z",
        sig: "k8UJWSQ8iR1LypSjASK2%2FxnAwH3b0qwT4rTQIQTkHs0%3D",
    },
];

/// Every fixture: its path under `tests/fixtures/` and its bytes, README included.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let described = described();
    let mut files: Vec<(&'static str, Vec<u8>)> = Vec::with_capacity(described.len() + 2);
    files.push(("README.md", readme(&described).into_bytes()));
    // The CRLF transcript and the collected files must keep their bytes on every
    // checkout, whatever `core.autocrlf` says.
    files.push((".gitattributes", b"* -text\n".to_vec()));
    files.extend(described.into_iter().map(|(name, _, bytes)| (name, bytes)));
    files
}

/// Every fixture but the README, with a line saying what it is.
fn described() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = actions();
    out.extend(links());
    out.extend(transcripts());
    out.extend(files());
    out.extend(errors());
    out.extend(tokens());
    out
}

// ---------------------------------------------------------------------------------------
// Machine actions

const MACHINE: &str = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";
const MACHINE_NAME: &str = "desktop-4f2k7.contoso.com";
const SERVER: &str = "7292e4eaa1ef6ae6d1e7f5d54c9e3a47e4c3f0b2";
const SERVER_NAME: &str = "srv-files-01.contoso.com";
const ANALYST: &str = "analyst@contoso.com";

fn actions() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let run = |script: &str, args: Option<&str>| {
        let mut params = vec![Param::new("ScriptName", script)];
        if let Some(args) = args {
            params.push(Param::new("Args", args));
        }
        Command::new(CommandType::RunScript, params)
    };
    let get = |path: &str| Command::new(CommandType::GetFile, vec![Param::new("Path", path)]);
    let put = |name: &str| Command::new(CommandType::PutFile, vec![Param::new("FileName", name)]);
    let minidump = || run("minidump.ps1", Some("-ProcessName OfficeClickToRun"));

    let pending = action(
        "e2ba9993-e176-4ece-a789-35e8b976b233",
        ActionStatus::Pending,
        (MACHINE, MACHINE_NAME),
        "Collect a memory dump",
        (
            "2021-02-05T08:02:13.4500000Z",
            "2021-02-05T08:02:13.4500000Z",
        ),
        Vec::new(),
    );
    let in_progress = action(
        "e9913b2d-470d-4782-9f3d-d9ab2761882c",
        ActionStatus::InProgress,
        (MACHINE, MACHINE_NAME),
        "Collect a memory dump",
        (
            "2021-02-05T08:10:41.1233333Z",
            "2021-02-05T08:10:52.9800000Z",
        ),
        vec![entry(
            0,
            CommandStatus::Created,
            (Some("2021-02-05T08:10:52.9800000Z"), None),
            &[],
            minidump(),
        )],
    );
    let seed = action(
        "988cc94e-7a8f-4b28-ab65-54970c5d5018",
        ActionStatus::Succeeded,
        (MACHINE, MACHINE_NAME),
        "Collect a memory dump",
        (
            "2021-02-04T15:36:47.7166667Z",
            "2021-02-04T15:43:49.4066667Z",
        ),
        vec![entry(
            0,
            CommandStatus::Completed,
            (
                Some("2021-02-04T15:37:02.6300000Z"),
                Some("2021-02-04T15:43:49.4066667Z"),
            ),
            &[],
            minidump(),
        )],
    );
    let script_error = action(
        "8ad99f2d-e9d4-4100-b413-4ab464660c20",
        ActionStatus::Succeeded,
        (MACHINE, MACHINE_NAME),
        "Is the dropper still there?",
        (
            "2021-02-05T09:21:30.2000000Z",
            "2021-02-05T09:22:11.5633333Z",
        ),
        vec![entry(
            0,
            CommandStatus::Completed,
            (
                Some("2021-02-05T09:21:44.0100000Z"),
                Some("2021-02-05T09:22:11.5633333Z"),
            ),
            &[],
            run("check-file.ps1", Some("-Path C:\\Temp\\payload.exe")),
        )],
    );
    let getfile = action(
        "0c2162c2-1a39-448b-8222-d11658b258f8",
        ActionStatus::Succeeded,
        (MACHINE, MACHINE_NAME),
        "Collect the hosts file",
        (
            "2021-02-05T10:00:05.7100000Z",
            "2021-02-05T10:01:02.3366667Z",
        ),
        vec![entry(
            0,
            CommandStatus::Completed,
            (
                Some("2021-02-05T10:00:19.8400000Z"),
                Some("2021-02-05T10:01:02.3366667Z"),
            ),
            &[],
            get("C:\\Windows\\System32\\drivers\\etc\\hosts"),
        )],
    );
    let chain_times = [
        "2021-02-05T10:45:12.0000000Z",
        "2021-02-05T10:45:31.1500000Z",
        "2021-02-05T10:45:33.4000000Z",
        "2021-02-05T10:47:40.9900000Z",
        "2021-02-05T10:47:41.2000000Z",
        "2021-02-05T10:47:41.8866667Z",
    ];
    let chain = action(
        "8f3545ef-8519-4d60-9887-bb4eb74269e6",
        ActionStatus::Succeeded,
        (SERVER, SERVER_NAME),
        "Collect running processes",
        (chain_times[0], chain_times[5]),
        vec![
            entry(
                0,
                CommandStatus::Completed,
                (Some(chain_times[1]), Some(chain_times[2])),
                &[],
                put("collect.ps1"),
            ),
            entry(
                1,
                CommandStatus::Completed,
                (Some(chain_times[2]), Some(chain_times[3])),
                &[],
                run("collect.ps1", Some("-OutFile C:\\Temp\\collect.txt")),
            ),
            entry(
                2,
                CommandStatus::Completed,
                (Some(chain_times[4]), Some(chain_times[5])),
                &[],
                get("C:\\Temp\\collect.txt"),
            ),
        ],
    );
    let mut failed = action(
        "b17d46a2-cd1e-4d01-9294-a4eff85aadf9",
        ActionStatus::Failed,
        (SERVER, SERVER_NAME),
        "Collect running processes",
        (
            "2021-02-05T12:03:00.5000000Z",
            "2021-02-05T12:03:58.0733333Z",
        ),
        vec![
            entry(
                0,
                CommandStatus::Completed,
                (
                    Some("2021-02-05T12:03:14.2000000Z"),
                    Some("2021-02-05T12:03:16.6000000Z"),
                ),
                &[],
                put("collect.ps1"),
            ),
            entry(
                1,
                CommandStatus::Failed,
                (
                    Some("2021-02-05T12:03:16.6000000Z"),
                    Some("2021-02-05T12:03:58.0733333Z"),
                ),
                &[
                    "Script execution failed",
                    "Set-Location : Cannot find path 'D:\\Collect' because it does not exist.",
                ],
                run("collect.ps1", Some("-OutFile D:\\Collect\\collect.txt")),
            ),
            // Not run: a failed command stops the ones after it.
            entry(
                2,
                CommandStatus::Created,
                (None, None),
                &[],
                get("D:\\Collect\\collect.txt"),
            ),
        ],
    );
    failed.error_h_result = Some(-2147024893);
    let timeout = action(
        "cafc41df-0da9-4229-b43b-950bce28c0d2",
        ActionStatus::TimeOut,
        (MACHINE, MACHINE_NAME),
        "Full disk inventory",
        (
            "2021-02-05T13:00:00.1000000Z",
            "2021-02-05T13:10:27.6500000Z",
        ),
        vec![entry(
            0,
            CommandStatus::Created,
            (Some("2021-02-05T13:00:22.3000000Z"), None),
            &[],
            run("inventory.ps1", Some("-Drive C:")),
        )],
    );
    let mut cancelled = action(
        "cff95f05-c44c-4edb-80fb-90a544a04c4a",
        ActionStatus::Cancelled,
        (SERVER, SERVER_NAME),
        "Collect the event log",
        (
            "2021-02-05T14:20:00.0000000Z",
            "2021-02-05T14:21:35.4400000Z",
        ),
        vec![entry(
            0,
            CommandStatus::Created,
            (None, None),
            &[],
            get("C:\\Windows\\System32\\winevt\\Logs\\Security.evtx"),
        )],
    );
    cancelled.cancellation_requestor = Some("lead@contoso.com".into());
    cancelled.cancellation_comment = Some("Wrong machine".into());

    vec![
        (
            "actions/pending.json",
            "Pending, no commands listed yet (details appear seconds after the start)",
            pretty_action(&pending),
        ),
        (
            "actions/in-progress.json",
            "InProgress, its RunScript still Created",
            pretty_action(&in_progress),
        ),
        (
            "actions/runscript-succeeded.json",
            "Succeeded RunScript: the seed page's action (988cc94e-...)",
            pretty_action(&seed),
        ),
        (
            "actions/runscript-script-error.json",
            "Succeeded RunScript whose script exited with 3",
            pretty_action(&script_error),
        ),
        (
            "actions/getfile-succeeded.json",
            "Succeeded GetFile of the hosts file",
            pretty_action(&getfile),
        ),
        (
            "actions/chain-succeeded.json",
            "Succeeded PutFile, RunScript, GetFile chain",
            pretty_action(&chain),
        ),
        (
            "actions/failed.json",
            "Failed: PutFile Completed, RunScript Failed with errors, GetFile never ran",
            pretty_action(&failed),
        ),
        (
            "actions/timeout.json",
            "TimeOut: the RunScript never finished",
            pretty_action(&timeout),
        ),
        (
            "actions/cancelled.json",
            "Cancelled before its GetFile ran",
            pretty_action(&cancelled),
        ),
    ]
}

/// A live response action with fields every scenario shares.
fn action(
    id: &str,
    status: ActionStatus,
    (machine_id, machine_name): (&str, &str),
    comment: &str,
    (created, updated): (&str, &str),
    commands: Vec<CommandEntry>,
) -> MachineAction {
    let mut a = MachineAction::default();
    a.id = Some(id.to_owned());
    a.action_type = Some("LiveResponse".to_owned());
    a.requestor = Some(ANALYST.to_owned());
    a.requestor_comment = Some(comment.to_owned());
    a.status = Some(status);
    a.machine_id = Some(machine_id.to_owned());
    a.computer_dns_name = Some(machine_name.to_owned());
    a.creation_date_time_utc = Some(created.to_owned());
    a.last_update_date_time_utc = Some(updated.to_owned());
    a.error_h_result = Some(0);
    a.commands = commands;
    a
}

fn entry(
    index: u32,
    status: CommandStatus,
    (start, end): (Option<&str>, Option<&str>),
    errors: &[&str],
    command: Command,
) -> CommandEntry {
    let mut e = CommandEntry::default();
    e.index = Some(index);
    e.start_time = start.map(str::to_owned);
    e.end_time = end.map(str::to_owned);
    e.command_status = Some(status);
    e.errors = errors.iter().map(|s| (*s).to_owned()).collect();
    e.command = Some(command);
    e
}

fn pretty_action(a: &MachineAction) -> Vec<u8> {
    // Serialised straight from the struct: field order is the struct's.
    let mut bytes = serde_json::to_vec_pretty(a).expect("a MachineAction always serialises");
    bytes.push(b'\n');
    bytes
}

fn pretty(value: &Value) -> Vec<u8> {
    format!("{value:#}\n").into_bytes()
}

// ---------------------------------------------------------------------------------------
// Result links

fn links() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    SERVED
        .iter()
        .map(|s| {
            let url = format!(
                "{BLOB}{}?se={}&sp=r&sv=2019-07-07&sr=b&sig={}",
                s.path, s.expires, s.sig
            );
            let reply = json!({
                "@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#Edm.String",
                "value": url,
            });
            let about = if s.content == "transcripts/seed.json" {
                "link reply of the seed page (its SAS URL, host replaced by {{BLOB}})"
            } else {
                "link reply (SAS URL on {{BLOB}})"
            };
            (s.link, about, pretty(&reply))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Results: transcripts and collected files

/// The seed page's transcript, byte for byte: a raw line break inside a string and
/// `\u0000` padding (the same text as `SEED` in crates/mdlr/src/transcript.rs).
const SEED: &str = "{\n    \"script_name\": \"minidump.ps1\",\n    \"exit_code\": 0,\n    \"script_output\": \"Transcript started, output file is C:\\\\ProgramData\\\\Microsoft\\\\Windows Defender Advanced Threat Protection\\\\Temp\\\\PSScriptOutputs\\\\PSScript_Transcript_{TRANSCRIPT_ID}.txt\nC:\\\\windows\\\\TEMP\\\\OfficeClickToRun.dmp.zip\\n51 MB\\n\\u0000\\u0000\\u0000\",\n    \"script_errors\":\"\"\n}";

/// A byte order mark, CRLF line ends (one raw, inside the string, like the seed's raw
/// line break), and text beyond ASCII.
const BOM_CRLF_NON_ASCII: &str = concat!(
    "\u{feff}{\r\n",
    "    \"script_name\": \"collect.ps1\",\r\n",
    "    \"exit_code\": 0,\r\n",
    "    \"script_output\": \"Transcript started, output file is C:\\\\ProgramData\\\\Microsoft\\\\Windows Defender Advanced Threat Protection\\\\Temp\\\\PSScriptOutputs\\\\PSScript_Transcript_{TRANSCRIPT_ID}.txt\r\n",
    "Benutzer: jürgen.müller\\r\\n",
    "Kommentar: 調査のための収集 (collecte pour l’enquête)\\r\\n",
    "Wrote 4 lines to C:\\\\Temp\\\\collect.txt\\r\\n\\u0000\\u0000\",\r\n",
    "    \"script_errors\": \"\"\r\n",
    "}\r\n",
);

const EXIT_CODE_STRING: &str = concat!(
    "{\n",
    "    \"script_name\": \"uptime.ps1\",\n",
    "    \"exit_code\": \"0\",\n",
    "    \"script_output\": \"Transcript started, output file is C:\\\\ProgramData\\\\Microsoft\\\\Windows Defender Advanced Threat Protection\\\\Temp\\\\PSScriptOutputs\\\\PSScript_Transcript_{TRANSCRIPT_ID}.txt\\nLastBootUpTime: 2021-02-01 08:12:45\\nUptime: 4 days, 01:47\\n\",\n",
    "    \"script_errors\": \"\"\n",
    "}\n",
);

const SCRIPT_ERROR: &str = concat!(
    "{\n",
    "    \"script_name\": \"check-file.ps1\",\n",
    "    \"exit_code\": 3,\n",
    "    \"script_output\": \"Transcript started, output file is C:\\\\ProgramData\\\\Microsoft\\\\Windows Defender Advanced Threat Protection\\\\Temp\\\\PSScriptOutputs\\\\PSScript_Transcript_{TRANSCRIPT_ID}.txt\\nChecking C:\\\\Temp\\\\payload.exe\\n\\u0000\\u0000\\u0000\",\n",
    "    \"script_errors\": \"Get-Item : Cannot find path 'C:\\\\Temp\\\\payload.exe' because it does not exist.\\nAt C:\\\\ProgramData\\\\Microsoft\\\\Windows Defender Advanced Threat Protection\\\\Downloads\\\\check-file.ps1:4 char:1\\n\"\n",
    "}\n",
);

fn transcripts() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "transcripts/seed.json",
            "RunScript transcript from the seed page, byte for byte (raw line break, \\u0000 padding)",
            SEED.as_bytes().to_vec(),
        ),
        (
            "transcripts/bom-crlf-non-ascii.json",
            "RunScript transcript with a UTF-8 BOM, CRLF line ends and non-ASCII text",
            BOM_CRLF_NON_ASCII.as_bytes().to_vec(),
        ),
        (
            "transcripts/exit-code-string.json",
            "RunScript transcript whose exit_code is a string (\"0\")",
            EXIT_CODE_STRING.as_bytes().to_vec(),
        ),
        (
            "transcripts/script-error.json",
            "RunScript transcript with exit_code 3 and script_errors",
            SCRIPT_ERROR.as_bytes().to_vec(),
        ),
    ]
}

fn files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let hosts = concat!(
        "# hosts file of DESKTOP-4F2K7 (mdlr test fixture)\r\n",
        "127.0.0.1       localhost\r\n",
        "::1             localhost\r\n",
        "203.0.113.66    update.contoso-cdn.example\r\n",
    );
    let collect = concat!(
        "Name           Id  Path\r\n",
        "svchost       812  C:\\Windows\\System32\\svchost.exe\r\n",
        "explorer     3120  C:\\Windows\\explorer.exe\r\n",
        "updater      4242  C:\\Users\\Public\\updater.exe\r\n",
    );
    vec![
        (
            "files/hosts",
            "a file GetFile collected (served gzipped as hosts.gz)",
            hosts.as_bytes().to_vec(),
        ),
        (
            "files/collect.txt",
            "a file GetFile collected (served gzipped as collect.txt.gz)",
            collect.as_bytes().to_vec(),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// API error bodies and token replies

fn errors() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let body = |code: &str, message: &str, target: &str| {
        pretty(&json!({"error": {"code": code, "message": message, "target": target}}))
    };
    vec![
        (
            "errors/400-active-request-already-exists.json",
            "400: the machine already has an active live response session",
            body(
                "ActiveRequestAlreadyExists",
                "Action is already in progress",
                "6bfb9ebd-55e9-4ca1-9896-ec50d576b331",
            ),
        ),
        (
            "errors/400-not-finished.json",
            "400: the result of a command that has not finished",
            body(
                "BadRequest",
                "Live response command has not finished yet, its result is not available",
                "8cbcbc46-8c6d-4354-86e4-8c9c59a4ecce",
            ),
        ),
        (
            "errors/401-unauthorized.json",
            "401: missing, expired or foreign token",
            body(
                "Unauthorized",
                "Authorization token is missing, expired or not valid for this API",
                "040523ea-d199-4d17-8e5f-28436981ed29",
            ),
        ),
        (
            "errors/403-forbidden.json",
            "403: the app lacks the permission",
            body(
                "Forbidden",
                "The application does not have any of the required application roles (Machine.Read.All, Machine.ReadWrite.All) to access the resource.",
                "4066b3aa-73af-4ff2-947e-2bc8c182ecf1",
            ),
        ),
        (
            "errors/404-resource-not-found.json",
            "404: no such machine action",
            body(
                "ResourceNotFound",
                "Machine action was not found",
                "d3c0a1f2-5b7e-4c19-8e2d-7f6a9b0c4e13",
            ),
        ),
        (
            "errors/429-too-many-requests.json",
            "429: quota used up (serve with Retry-After)",
            body(
                "TooManyRequests",
                "Rate limit is exceeded. Try again in 3 seconds.",
                "5a8e2c7d-91b4-4f06-b3e1-0c2d4f6a8b97",
            ),
        ),
        (
            "errors/500-internal-server-error.json",
            "500: the service failed",
            body(
                "InternalServerError",
                "An unexpected error occurred",
                "f0e1d2c3-b4a5-4968-8776-a5b4c3d2e1f0",
            ),
        ),
    ]
}

fn tokens() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "tokens/success.json",
            "token reply, expires_in as a string",
            pretty(&json!({
                "access_token": "fixture-access-token-3f9c2a",
                "expires_in": "3599",
                "ext_expires_in": "3599",
                "token_type": "Bearer",
            })),
        ),
        (
            "tokens/invalid-client.json",
            "token error: invalid_client, AADSTS7000215 (wrong client secret)",
            pretty(&json!({
                "correlation_id": "2b7d4e1a-6c3f-4a8b-9e0d-1f2a3b4c5d6e",
                "error": "invalid_client",
                "error_codes": [7000215],
                "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00000000-0000-0000-0000-000000000000'. Trace ID: 7c1e9a4b-2d3f-4e5a-8b6c-9d0e1f2a3b4c Correlation ID: 2b7d4e1a-6c3f-4a8b-9e0d-1f2a3b4c5d6e Timestamp: 2021-02-04 15:36:40Z",
                "error_uri": "https://login.microsoftonline.com/error?code=7000215",
                "timestamp": "2021-02-04 15:36:40Z",
                "trace_id": "7c1e9a4b-2d3f-4e5a-8b6c-9d0e1f2a3b4c",
            })),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// README

fn readme(described: &[(&'static str, &'static str, Vec<u8>)]) -> String {
    let mut s = String::from(
        "# Test fixtures\n\
         \n\
         Generated by `cargo xtask fixtures` from mdlr's own types (`xtask/src/fixtures.rs`);\n\
         do not edit them by hand. `cargo test -p mdlr-tests --test fixtures` fails when they\n\
         are stale, and `cargo xtask demo` serves them to the real `mdlr` binary.\n\
         \n\
         In `links/*.json` the result host is the placeholder `{{BLOB}}` (scheme, host and\n\
         port, no trailing slash): replace it with a stand-in's base URL, e.g.\n\
         `http://127.0.0.1:PORT/blob` as the demo does.\n\
         \n\
         ## Served results\n\
         \n\
         RunScript results are served as they are; GetFile results gzipped, with\n\
         `Content-Disposition: attachment; filename=\"<last part of Path>.gz\"`.\n\
         \n\
         | action | index | link | content |\n\
         |---|---|---|---|\n",
    );
    for r in SERVED {
        s.push_str(&format!(
            "| `{}` | {} | `{}` | `{}` |\n",
            r.action, r.index, r.link, r.content
        ));
    }
    s.push_str("\n## Files\n\n| file | what |\n|---|---|\n");
    for (name, about, _) in described {
        s.push_str(&format!("| `{name}` | {about} |\n"));
    }
    s
}

//! The contract (`--features contract`): serde's wire shapes in the schema and the TypeScript,
//! values of each through a real server checked against the schema (ajv), the documents
//! through the AsyncAPI project's parser, and the TypeScript through `tsc --strict`, with a
//! page that misuses it failing where it does.
//!
//! The examples' documents and TypeScript are snapshot-tested in `tests/example_kits.rs`;
//! this file's own endpoints in `tests/contract/shapes.*`.
#![cfg(feature = "contract")]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::SinkExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;

/// The longest a node or tsc run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// `rename_all`, `Option`, `skip`, `default` with `skip_serializing_if`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Profile {
    display_name: String,
    age_years: Option<u8>,
    #[serde(skip)]
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nick_name: Option<String>,
}

/// Internally tagged (`tag`), with a unit variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Shape {
    Circle { radius: f64 },
    Square { side: f64 },
    Point,
}

/// `untagged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
enum Id {
    Number(u64),
    Name(String),
}

/// Externally tagged, with data of every kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Data {
    Plain,
    Tuple(i32, String),
    Struct { x: i32 },
    Newtype(Profile),
}

/// Adjacently tagged (`tag` and `content`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "t", content = "c", rename_all = "lowercase")]
enum Adjacent {
    A(u8),
    B { s: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Envelope {
    profile: Profile,
    shape: Shape,
    id: Id,
    data: Data,
    adjacent: Adjacent,
    list: Vec<Id>,
    map: BTreeMap<String, i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maybe: Option<Shape>,
}

#[derive(Deserialize, JsonSchema)]
struct Filter {
    limit: u32,
}

/// Sends back what it gets.
#[websocket("/shapes/{room}")]
fn shapes(room: String, Query(filter): Query<Filter>, out: Out<Json<Envelope>>) {
    let _ = (room, filter.limit);
    on_message(|Json(envelope): Json<Envelope>| out.write(Json(envelope)));
}

/// A type without a schema: still compiles, marked unknown.
#[derive(Serialize, Deserialize)]
struct NoSchema {
    anything: String,
}

#[websocket("/opaque/{n}")]
fn opaque(n: u16, out: Out<Json<NoSchema>>, text: Out<String>) {
    let _ = n;
    on_message(|Json(value): Json<NoSchema>| out.write(Json(value)));
    text.write("hi");
}

/// A type declared inside the function, out of the contract's reach: marked unknown.
#[websocket("/local")]
fn local(out: Out<String>) {
    #[derive(Deserialize)]
    struct Local {
        n: u8,
    }
    on_message(|Json(local): Json<Local>| out.write(local.n.to_string()));
}

fn server() -> Server {
    Server::new().route(shapes).route(opaque).route(local)
}

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract")
}

/// What each serde shape looks like on the wire, one value per variant.
fn envelopes() -> Vec<Envelope> {
    let profile = Profile {
        display_name: "Ada".into(),
        age_years: Some(36),
        secret: String::new(),
        nick_name: None,
    };
    let base = Envelope {
        profile: profile.clone(),
        shape: Shape::Circle { radius: 1.5 },
        id: Id::Number(7),
        data: Data::Plain,
        adjacent: Adjacent::A(1),
        list: vec![Id::Name("x".into()), Id::Number(2)],
        map: BTreeMap::from([("a".into(), 1)]),
        maybe: None,
    };
    vec![
        base.clone(),
        Envelope {
            profile: Profile {
                age_years: None,
                nick_name: Some("ada".into()),
                ..profile.clone()
            },
            shape: Shape::Square { side: 2.0 },
            id: Id::Name("seven".into()),
            data: Data::Tuple(-1, "one".into()),
            adjacent: Adjacent::B { s: "s".into() },
            maybe: Some(Shape::Point),
            ..base.clone()
        },
        Envelope {
            shape: Shape::Point,
            data: Data::Struct { x: 3 },
            list: Vec::new(),
            map: BTreeMap::new(),
            ..base.clone()
        },
        Envelope {
            data: Data::Newtype(profile),
            maybe: Some(Shape::Circle { radius: 0.0 }),
            ..base
        },
    ]
}

/// Returns whether the test can run; when a tool is missing, says so, and fails under CI.
fn available(test: &str, missing: Option<String>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    let install = "`.ci/run` installs them; on your machine: `npm install --prefix tests/clients` \
                   and `npm install --prefix client`";
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: cannot run, {missing} (a failure under CI=true). {install}.");
    }
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {missing}. {install}.");
    false
}

fn missing(dir: &str, package: &str) -> Option<String> {
    let installed = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return Some("`node` is missing".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    (!root.join("node_modules").join(package).exists())
        .then(|| format!("the node package `{package}` is not installed in {dir}"))
}

/// Runs a command to its end (within the timeout, then killed); its status and output.
async fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TOOL_TIMEOUT, child)
        .await
        .expect("the tool did not finish in time")
        .expect("the tool did not start");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

async fn node(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let script = contract_dir().join("../clients/contract.mjs");
    let mut all = vec![script.as_os_str()];
    all.extend_from_slice(args);
    run("node", &all).await
}

#[test]
fn shapes_snapshot_and_unknown_types() {
    let contract = server().contract().info("wsock contract shapes", "0.1.0");
    let files = [
        ("shapes.asyncapi.json", contract.asyncapi_json()),
        ("shapes.ts", contract.typescript("wsock-client")),
    ];
    for (file, text) in files {
        let path = contract_dir().join(file);
        match std::fs::read_to_string(&path) {
            Ok(old) if old == text => {}
            Ok(_) if std::env::var_os("WSOCK_BLESS").is_none() => panic!(
                "tests/contract/{file} differs from what the endpoints generate; WSOCK_BLESS=1 \
                 rewrites it:\n{text}"
            ),
            _ => std::fs::write(&path, text).unwrap(),
        }
    }
    // The type without a schema, both ways; the String beside it is known.
    assert_eq!(
        contract.unknown(),
        [
            "local inbound: Json < Local >",
            "opaque inbound: contract::NoSchema",
            "opaque outbound: contract::NoSchema"
        ]
    );
    let ts = contract.typescript("wsock-client");
    assert!(
        ts.contains("// - opaque inbound: contract::NoSchema"),
        "{ts}"
    );
    assert!(ts.contains("export type OpaqueSend = unknown;"), "{ts}");
    // Of two kinds (JSON and text): as they come.
    assert!(
        ts.contains("export type OpaqueReceive = string | ArrayBuffer;"),
        "{ts}"
    );
    let doc = contract.asyncapi();
    let profile = &doc["components"]["schemas"]["Profile"];
    // rename_all and skip: camelCase names, no `secret`; Option: not required, or nullable.
    let names: Vec<&String> = profile["properties"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["ageYears", "displayName", "nickName"]);
    assert_eq!(profile["required"], json!(["displayName"]));
    assert_eq!(
        doc["channels"]["shapes"]["bindings"]["ws"]["query"]["required"],
        json!(["limit"])
    );
    assert_eq!(
        doc["channels"]["opaque"]["parameters"]["n"]["description"],
        "a path segment: integer"
    );
}

/// Values of every serde shape through a real server, both ways checked against the schema
/// (and a value of a wrong shape refused by it, so the check can fail).
#[tokio::test]
async fn serde_shapes_round_trip_and_match_the_schema() {
    let app = common::TestServer::start(server()).await;
    let mut ws = app.connect("/shapes/lobby?limit=3").await;
    let mut samples = Vec::new();
    for envelope in envelopes() {
        let sent = serde_json::to_value(&envelope).unwrap();
        tokio::time::timeout(common::WAIT, ws.send(WsMessage::text(sent.to_string())))
            .await
            .expect("send timed out")
            .expect("send failed");
        let text = common::next_text(&mut ws).await;
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sent, "the server sends back what it got");
        assert_eq!(
            serde_json::from_value::<Envelope>(back.clone()).unwrap(),
            envelope
        );
        samples.push(json!({ "message": "shapes_in", "value": sent }));
        samples.push(json!({ "message": "shapes_out", "value": back }));
    }
    drop(ws);
    app.stop().await;
    if !available("contract samples", missing("tests/clients", "ajv")) {
        return;
    }
    let dir = tempdir();
    let doc = dir.join("shapes.asyncapi.json");
    std::fs::write(&doc, server().contract().asyncapi_json()).unwrap();
    let good = dir.join("samples.json");
    std::fs::write(&good, Value::Array(samples.clone()).to_string()).unwrap();
    let (ok, output) = node(&["samples".as_ref(), doc.as_ref(), good.as_ref()]).await;
    assert!(ok, "{output}");
    assert!(output.contains("8 of 8 samples match"), "{output}");
    // Wrong shapes: a renamed field, a wrong type, an unknown tag, a skipped field's absence
    // is fine but a null where a string is required is not.
    let mut wrong = Vec::new();
    for (pointer, value) in [
        ("/profile", json!({ "display_name": "Ada", "ageYears": 1 })),
        ("/profile/ageYears", json!("thirty")),
        ("/shape", json!({ "kind": "triangle" })),
        ("/adjacent", json!({ "t": "a", "c": "not a number" })),
        ("/data", json!({ "tuple": [1] })),
    ] {
        let mut value_of = samples[0]["value"].clone();
        *value_of.pointer_mut(pointer).unwrap() = value;
        wrong.push(json!({ "message": "shapes_in", "value": value_of }));
    }
    let bad = dir.join("wrong.json");
    std::fs::write(&bad, Value::Array(wrong).to_string()).unwrap();
    let (ok, output) = node(&["samples".as_ref(), doc.as_ref(), bad.as_ref()]).await;
    assert!(!ok, "{output}");
    assert!(output.contains("0 of 5 samples match"), "{output}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The examples' documents and this file's validate with the AsyncAPI project's parser; a
/// broken one does not.
#[tokio::test]
async fn documents_validate_with_the_asyncapi_parser() {
    if !available(
        "asyncapi parser",
        missing("tests/clients", "@asyncapi/parser"),
    ) {
        return;
    }
    let mut docs: Vec<PathBuf> = std::fs::read_dir(contract_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".asyncapi.json"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 5, "{docs:?}");
    let mut args: Vec<&std::ffi::OsStr> = vec!["validate".as_ref()];
    args.extend(docs.iter().map(|path| path.as_os_str()));
    let (ok, output) = node(&args).await;
    let _ = writeln!(std::io::stderr(), "{output}");
    assert!(ok, "{output}");
    assert_eq!(
        output.matches(", 0 errors)").count(),
        docs.len(),
        "{output}"
    );
    // The same document with a channel parameter its address does not have: an error.
    let mut broken = server().contract().asyncapi();
    broken["channels"]["shapes"]["parameters"] = json!({ "nope": {} });
    let dir = tempdir();
    let path = dir.join("broken.json");
    std::fs::write(&path, broken.to_string()).unwrap();
    let (ok, output) = node(&["validate".as_ref(), path.as_ref()]).await;
    assert!(!ok, "{output}");
    assert!(output.contains("INVALID"), "{output}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The generated TypeScript compiles with `tsc --strict` with a page that uses it; a page
/// that misuses it fails at each misuse, and only there.
#[tokio::test]
async fn typescript_compiles_and_a_misuse_fails_where_it_is() {
    if !available("contract typescript", missing("client", "typescript")) {
        return;
    }
    let tsc = Path::new(env!("CARGO_MANIFEST_DIR")).join("client/node_modules/typescript/bin/tsc");
    let config = contract_dir().join("tsconfig.json");
    let (ok, output) = run("node", &[tsc.as_ref(), "-p".as_ref(), config.as_ref()]).await;
    assert!(
        ok,
        "tsc --strict on the generated TypeScript and a page:\n{output}"
    );
    let config = contract_dir().join("tsconfig.misuse.json");
    let (ok, output) = run("node", &[tsc.as_ref(), "-p".as_ref(), config.as_ref()]).await;
    assert!(!ok, "the misusing page compiled:\n{output}");
    let page = std::fs::read_to_string(contract_dir().join("pages/misuse.ts")).unwrap();
    let mut expected: Vec<(usize, String)> = page
        .lines()
        .enumerate()
        .filter_map(|(i, line)| Some((i + 1, line.split_once("// error ")?.1.to_owned())))
        .collect();
    expected.sort();
    let mut found: Vec<(usize, String)> = output
        .lines()
        .filter_map(|line| {
            // tests/contract/pages/misuse.ts(7,24): error TS2353: ..
            let (place, rest) = line.split_once("): error ")?;
            let line_no = place.rsplit_once('(')?.1.split(',').next()?.parse().ok()?;
            assert!(
                place.contains("pages/misuse.ts("),
                "an error outside the page: {line}"
            );
            Some((line_no, rest.split(':').next()?.to_owned()))
        })
        .collect();
    found.sort();
    assert_eq!(found, expected, "tsc's errors:\n{output}");
}

/// The chat example's page script: `examples/chat/page.ts` compiles with `tsc --strict`
/// against the chat's generated types (`examples/chat/contract.ts`, kept fresh by
/// `tests/example_kits.rs`) and the client's, to the `page.js` the example serves
/// (`WSOCK_BLESS=1` rewrites it). The Chromium tests of `tests/clients.rs` run that page.
#[tokio::test]
async fn the_chat_page_is_what_its_typescript_builds() {
    if !available("chat page typescript", missing("client", "typescript")) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tsc = root.join("client/node_modules/typescript/bin/tsc");
    let config = root.join("examples/chat/tsconfig.json");
    let dir = tempdir();
    let (ok, output) = run(
        "node",
        &[
            tsc.as_ref(),
            "-p".as_ref(),
            config.as_ref(),
            "--outDir".as_ref(),
            dir.as_ref(),
        ],
    )
    .await;
    assert!(ok, "tsc --strict on examples/chat/page.ts:\n{output}");
    let built = std::fs::read_to_string(dir.join("examples/chat/page.js")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let served = root.join("examples/chat/page.js");
    match std::fs::read_to_string(&served) {
        Ok(old) if old == built => {}
        Ok(_) if std::env::var_os("WSOCK_BLESS").is_none() => panic!(
            "examples/chat/page.js is not what examples/chat/page.ts builds; WSOCK_BLESS=1 \
             rewrites it:\n{built}"
        ),
        _ => std::fs::write(&served, built).unwrap(),
    }
}

/// A fresh directory under the system's temporary directory.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique_id(&format!(
        "wsock-contract-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// With the dev console on (debug builds), the server serves its document, and each
/// endpoint's console links to it; with the console off, neither.
#[tokio::test]
async fn the_dev_console_links_to_the_served_document() {
    let app = common::TestServer::start(server().dev_console(true)).await;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let response = common::raw_http(app.addr, get("/_wsock/asyncapi.json").as_bytes()).await;
    assert_eq!(common::status_of(&response), 200, "{response}");
    assert!(
        response.contains("content-type: application/json"),
        "{response}"
    );
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let served: Value = serde_json::from_str(body).unwrap();
    assert_eq!(served, server().contract().asyncapi());
    let console = common::raw_http(app.addr, get("/opaque/1").as_bytes()).await;
    assert!(
        console.contains("href=\"/_wsock/asyncapi.json\""),
        "{console}"
    );
    app.stop().await;

    let app = common::TestServer::start(server().dev_console(false)).await;
    let response = common::raw_http(app.addr, get("/_wsock/asyncapi.json").as_bytes()).await;
    assert_eq!(common::status_of(&response), 404, "{response}");
    app.stop().await;
}

mod elsewhere {
    use wsock::prelude::*;

    /// Another `local`.
    #[websocket("/elsewhere/local")]
    pub fn local(out: Out<String>) {
        out.write("hi");
    }
}

/// Endpoints of one name in two modules: each its own channel, messages and function.
#[test]
fn endpoints_of_the_same_name_get_their_own_ids() {
    let contract = Server::new()
        .route(local)
        .route(elsewhere::local)
        .contract();
    let ids: Vec<&str> = contract.endpoints().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["local", "local_2"]);
    let doc = contract.asyncapi();
    assert_eq!(doc["channels"]["local"]["address"], "/elsewhere/local");
    assert_eq!(doc["channels"]["local_2"]["address"], "/local");
    assert!(doc["components"]["messages"]["local_2_in"].is_object());
    let ts = contract.typescript("wsock-client");
    assert!(ts.contains("export function connectLocal2("), "{ts}");
}

/// `write_typescript` writes the file, and leaves it alone (no new modification time, so no
/// rebuild of the page) while the contract has not changed.
#[test]
fn write_typescript_writes_only_a_change() {
    let dir = tempdir();
    let path = dir.join("contract.ts");
    wsock::contract::write_typescript(&server(), &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, server().contract().typescript("wsock-client"));
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    wsock::contract::write_typescript(&server(), &path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        written
    );
    std::fs::write(&path, "stale").unwrap();
    wsock::contract::write_typescript_with(&server(), &path, "/_wsock/client.js").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("from \"/_wsock/client.js\""), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

//! Malformed requests get `Status` errors; the server never panics on client input.

use kube::Client;
use stash_testkit::FakeApiServer;

async fn send(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.as_bytes().to_vec())
        .unwrap();
    match client.request_text(req).await {
        Ok(text) => (200, text),
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(other) => panic!("{method} {uri}: transport error {other:?}"),
    }
}

#[tokio::test]
async fn malformed_requests_are_rejected_with_status_errors() {
    let server = FakeApiServer::builder()
        .with_controllers()
        .start()
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    let json = "application/json";
    let cases: Vec<(&str, &str, &str, &str, u16)> = vec![
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            "not json",
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            "[1,2]",
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"metadata":"x"}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"metadata":{"name":"UPPER"}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"kind":"Secret","metadata":{"name":"a"}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/nope/configmaps",
            json,
            r#"{"metadata":{"name":"a"}}"#,
            404,
        ),
        (
            "POST",
            "/apis/batch/v1/namespaces/default/jobs",
            json,
            r#"{"metadata":{"name":"j"},"spec":"x"}"#,
            422,
        ),
        (
            "POST",
            "/apis/batch/v1/namespaces/default/cronjobs",
            json,
            r#"{"metadata":{"name":"c"},"spec":{"schedule":"*/4294967295 * * * *"}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            json,
            r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"metadata":{"name":"l1","labels":{"a":"has space"}}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"metadata":{"name":"l2","labels":{"a":1}}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"metadata":{"name":"l3","annotations":{"bad key!":"v"}}}"#,
            422,
        ),
        (
            "POST",
            "/apis/batch/v1/namespaces/default/jobs",
            json,
            r#"{"metadata":{"name":"jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x"}]}}}}"#,
            422,
        ),
        (
            "POST",
            "/apis/batch/v1/namespaces/default/cronjobs",
            json,
            r#"{"metadata":{"name":"ccccccccccccccccccccccccccccccccccccccccccccccccccccc"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x"}]}}}}}}"#,
            422,
        ),
        (
            "POST",
            "/apis/batch/v1/namespaces/default/cronjobs",
            json,
            r#"{"metadata":{"name":"tz"},"spec":{"schedule":"* * * * *","timeZone":"Nowhere/Special","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x"}]}}}}}}"#,
            422,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=a%3D(",
            json,
            "",
            400,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?limit=x",
            json,
            "",
            400,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?limit=1&continue=garbage",
            json,
            "",
            400,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/x/nosuchsub",
            json,
            "",
            404,
        ),
        ("GET", "/apis/nope/v1/things", json, "", 404),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "text/plain",
            "{}",
            415,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/x",
            json,
            r#"{"propagationPolicy":"Sideways"}"#,
            400,
        ),
        ("POST", "/testkit/v1/clock?advance=-5", json, "", 400),
        (
            "POST",
            "/testkit/v1/faults",
            json,
            r#"{"action":"explode"}"#,
            400,
        ),
    ];
    for (method, uri, ct, body, want) in cases {
        let (code, message) = send(&client, method, uri, ct, body).await;
        assert_eq!(code, want, "{method} {uri} {body}: {message}");
    }

    let (code, version) = send(&client, "GET", "/version/", json, "").await;
    assert_eq!(
        code, 200,
        "the Python VersionApi asks for /version/: {version}"
    );

    // Objects made odd through permissive endpoints must not break later operations.
    let (code, _) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        json,
        r#"{"metadata":{"name":"x"}}"#,
    )
    .await;
    assert_eq!(code, 200);
    let patches = [
        (
            "application/json-patch+json",
            r#"[{"op":"move","from":"/nope","path":"/a"}]"#,
            422,
        ),
        (
            "application/json-patch+json",
            r#"[{"op":"add","path":"/data/k/deeper","value":1}]"#,
            422,
        ),
        ("application/json-patch+json", r#"{"op":"add"}"#, 400),
        (
            "application/merge-patch+json",
            r#"{"metadata":{"name":"renamed"}}"#,
            400,
        ),
        (
            "application/strategic-merge-patch+json",
            r#"{"$patch":"explode"}"#,
            400,
        ),
        (
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            422,
        ),
        ("application/apply-patch+yaml", ": : :", 400),
    ];
    for (ct, body, want) in patches {
        let (code, message) = send(
            &client,
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            ct,
            body,
        )
        .await;
        assert_eq!(code, want, "{ct} {body}: {message}");
    }
    let ns = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"odd"}}"#;
    assert_eq!(
        send(&client, "POST", "/api/v1/namespaces", json, ns)
            .await
            .0,
        200
    );
    let (code, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/odd/status",
        "application/merge-patch+json",
        r#"{"status":"weird"}"#,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/odd",
        "application/merge-patch+json",
        r#"{"spec":"weird"}"#,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = send(&client, "DELETE", "/api/v1/namespaces/odd", json, "").await;
    assert_eq!(code, 200);
    server.settle().await;
    let (code, message) = send(&client, "GET", "/api/v1/namespaces/odd", json, "").await;
    assert_eq!(
        code, 404,
        "the namespace controller still finalized it: {message}"
    );
}

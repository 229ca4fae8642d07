//! Join tokens: the server writes DATA/token, serves its CA at /cacerts, and accepts the
//! token's secret as a node's bearer token; a client refuses a server whose CA is not
//! the one the token pins.

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use skiff_client::token::JoinToken;
use skiff_testkit::TestServer;

#[tokio::test]
async fn the_token_file_pins_the_served_ca() {
    let s = TestServer::start().await;
    let path = s.dir.path().join("token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let written = JoinToken::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written, s.server.token);

    let cacerts = s.anonymous.get(format!("{}/cacerts", s.url)).send().await.unwrap();
    assert_eq!(cacerts.status(), 200, "served without authentication");
    let pem = cacerts.bytes().await.unwrap();
    assert!(written.matches_ca(&pem));
}

#[tokio::test]
async fn an_agent_joins_with_the_token() {
    let s = TestServer::start().await;
    let client = skiff_client::connect_with_token(&s.url, &s.server.token.to_string()).await.unwrap();
    Api::<Node>::all(client.clone()).list(&Default::default()).await.expect("a node may list nodes");

    let review = s
        .anonymous
        .post(format!("{}/apis/authentication.k8s.io/v1/selfsubjectreviews", s.url))
        .bearer_auth(&s.server.token.secret)
        .json(&serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = review.json().await.unwrap();
    assert_eq!(body["status"]["userInfo"]["username"], "system:node:<unknown>");
    assert_eq!(body["status"]["userInfo"]["groups"][0], "system:nodes");
}

#[tokio::test]
async fn a_wrong_secret_gets_401() {
    let s = TestServer::start().await;
    let wrong = JoinToken { secret: "not-the-secret".into(), ..s.server.token.clone() };
    let client = skiff_client::connect_with_token(&s.url, &wrong.to_string()).await.unwrap();
    let error = Api::<Node>::all(client).list(&Default::default()).await.unwrap_err();
    assert!(skiff_client::is_status(&error, &[401]), "{error}");
}

#[tokio::test]
async fn a_server_with_another_ca_is_refused_before_the_secret_is_sent() {
    let s = TestServer::start().await;
    let other = TestServer::start().await;
    // The token of `other` names other's CA: `s` serves a different one.
    let Err(error) = skiff_client::connect_with_token(&s.url, &other.server.token.to_string()).await else {
        panic!("joined a server whose CA the token does not name");
    };
    assert!(matches!(error, skiff_client::Error::CaMismatch { .. }), "{error}");
}

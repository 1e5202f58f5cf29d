mod support;

use support::apiserver::TestApiServer;

#[tokio::test]
async fn starts() {
    let server = TestApiServer::start().await;
    assert!(server.url().starts_with("http://127.0.0.1:"));
}

//! Collaboration rooms over WebSocket: joins, relayed messages and leaves, within a tenant.

use serde_json::json;

use super::client::WsClient;
use crate::helpers::*;

#[actix_web::test]
async fn room_members_relay_messages_and_hear_joins_and_leaves_within_their_tenant() {
    let app = spawn_app().await;
    app.add_tenant("other").await;
    let mut alice = WsClient::connect(&app, "alice", "").await;
    let mut bob = WsClient::connect(&app, "bob", "").await;
    let mut eve =
        WsClient::connect_with(&app, Some(app.token_in("other", "eve", &["user"])), "").await;
    let join = json!({"type": "join_room", "room_id": "design"});

    let joined = alice.request(&join).await;
    assert_eq!(
        joined,
        json!({"type": "room_joined", "room_id": "design", "members": []})
    );
    let joined = bob.request(&join).await;
    assert_eq!(joined["members"][0]["user_id"], "alice");
    let notice = alice.next_json().await;
    assert_eq!(notice["type"], "room_member_joined");
    assert_eq!(notice["user_id"], "bob");
    // Same room name, another tenant: a different room.
    assert_eq!(eve.request(&join).await["members"], json!([]));

    let sent = bob
        .request(
            &json!({"type": "room_message", "room_id": "design", "message": {"cursor": [3, 4]}}),
        )
        .await;
    assert_eq!(
        sent,
        json!({"type": "room_message_sent", "room_id": "design", "recipients": 1})
    );
    let relayed = alice.next_json().await;
    assert_eq!(relayed["type"], "room_message");
    assert_eq!(relayed["from"]["user_id"], "bob");
    assert_eq!(relayed["message"], json!({"cursor": [3, 4]}));

    let outsider = eve
        .request(&json!({"type": "room_message", "room_id": "elsewhere", "message": 1}))
        .await;
    assert_eq!(outsider["error"]["code"], "room_not_joined");
    let bad_name = eve
        .request(&json!({"type": "join_room", "room_id": ""}))
        .await;
    assert_eq!(bad_name["error"]["code"], "invalid_message");

    let left = bob
        .request(&json!({"type": "leave_room", "room_id": "design"}))
        .await;
    assert_eq!(left, json!({"type": "room_left", "room_id": "design"}));
    let notice = alice.next_json().await;
    assert_eq!(
        (notice["type"].as_str(), notice["user_id"].as_str()),
        (Some("room_member_left"), Some("bob"))
    );
    let again = bob
        .request(&json!({"type": "leave_room", "room_id": "design"}))
        .await;
    assert_eq!(again["error"]["code"], "room_not_joined");

    // A connection that goes away leaves its rooms.
    bob.request(&join).await;
    assert_eq!(alice.next_json().await["type"], "room_member_joined");
    drop(bob);
    let notice = alice.next_json().await;
    assert_eq!(notice["type"], "room_member_left");
    // Eve heard nothing of it all: her next frame is the answer to her own ping.
    assert_eq!(eve.request(&json!({"type": "ping"})).await["type"], "pong");
}

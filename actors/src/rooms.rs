//! Collaboration rooms (the seeds' Studio pattern): WebSocket connections of one tenant join
//! a named room and relay messages to its other members, who hear of joins and leaves.
//!
//! [`RoomHub`] owns every room of this node, keyed by tenant and room name, so a room name
//! never reaches across tenants. Messages are relayed into the members' own bounded queues
//! without waiting (a member too slow to keep up is cut off like any slow subscriber).
//!
//! Messages: [`JoinRoom`], [`LeaveRoom`], [`LeaveRooms`], [`SendToRoom`]. Owned by the
//! process (started by [`Gateway::start`](crate::Gateway::start)).

use std::{collections::HashMap, sync::Arc};

use actix::prelude::*;
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    caller::{TenantId, UserId},
    subscriber::{Delivery, Offered, SubscriberQueue},
};

/// A connection in a room.
#[derive(Debug, Clone)]
pub struct RoomMember {
    pub connection_id: Uuid,
    pub user_id: UserId,
}

/// Why a room operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the room already has {0} members")]
    Full(usize),
    #[error("this connection has not joined the room")]
    NotJoined,
}

struct Member {
    user_id: UserId,
    queue: SubscriberQueue,
}

#[derive(Default)]
struct Room {
    members: HashMap<Uuid, Member>,
}

impl Room {
    /// Sends `frame` to every member but `except`; forgets members that are gone.
    fn relay(&mut self, frame: &Arc<str>, except: Uuid) -> usize {
        let mut relayed = 0;
        self.members.retain(|id, member| {
            if *id == except {
                return true;
            }
            match member.queue.offer(Delivery::Frame(frame.clone())) {
                Offered::Queued => {
                    relayed += 1;
                    true
                }
                Offered::Dropped => true,
                Offered::Gone => false,
            }
        });
        relayed
    }
}

pub struct RoomHub {
    rooms: HashMap<(TenantId, Arc<str>), Room>,
    max_members: usize,
}

impl RoomHub {
    pub fn new(max_members: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            max_members,
        }
    }

    fn leave(&mut self, tenant_id: &TenantId, room_id: &Arc<str>, connection_id: Uuid) -> bool {
        let key = (tenant_id.clone(), room_id.clone());
        let Some(room) = self.rooms.get_mut(&key) else {
            return false;
        };
        let Some(member) = room.members.remove(&connection_id) else {
            return false;
        };
        let notice = notice("room_member_left", room_id, &member.user_id, connection_id);
        room.relay(&notice, connection_id);
        if room.members.is_empty() {
            self.rooms.remove(&key);
        }
        true
    }
}

impl Actor for RoomHub {
    type Context = Context<Self>;
}

fn notice(kind: &str, room_id: &str, user_id: &str, connection_id: Uuid) -> Arc<str> {
    Arc::from(
        json!({
            "type": kind,
            "room_id": room_id,
            "user_id": user_id,
            "connection_id": connection_id,
            "timestamp": Utc::now(),
        })
        .to_string(),
    )
}

/// Adds a connection to a room (creating it); answers the members already there.
#[derive(Message)]
#[rtype(result = "Result<Vec<RoomMember>, RoomError>")]
pub struct JoinRoom {
    pub tenant_id: TenantId,
    pub room_id: Arc<str>,
    pub member: RoomMember,
    pub queue: SubscriberQueue,
}

impl Handler<JoinRoom> for RoomHub {
    type Result = Result<Vec<RoomMember>, RoomError>;

    fn handle(&mut self, msg: JoinRoom, _: &mut Self::Context) -> Self::Result {
        let room = self
            .rooms
            .entry((msg.tenant_id, msg.room_id.clone()))
            .or_default();
        let connection_id = msg.member.connection_id;
        if !room.members.contains_key(&connection_id) {
            if room.members.len() >= self.max_members {
                return Err(RoomError::Full(self.max_members));
            }
            let joined = notice(
                "room_member_joined",
                &msg.room_id,
                &msg.member.user_id,
                connection_id,
            );
            room.relay(&joined, connection_id);
            room.members.insert(
                connection_id,
                Member {
                    user_id: msg.member.user_id,
                    queue: msg.queue,
                },
            );
        }
        Ok(room
            .members
            .iter()
            .filter(|(id, _)| **id != connection_id)
            .map(|(id, m)| RoomMember {
                connection_id: *id,
                user_id: m.user_id.clone(),
            })
            .collect())
    }
}

/// Removes a connection from a room; answers whether it was a member.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct LeaveRoom {
    pub tenant_id: TenantId,
    pub room_id: Arc<str>,
    pub connection_id: Uuid,
}

impl Handler<LeaveRoom> for RoomHub {
    type Result = bool;

    fn handle(&mut self, msg: LeaveRoom, _: &mut Self::Context) -> bool {
        self.leave(&msg.tenant_id, &msg.room_id, msg.connection_id)
    }
}

/// Removes a closing connection from every room it joined.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveRooms {
    pub tenant_id: TenantId,
    pub room_ids: Vec<Arc<str>>,
    pub connection_id: Uuid,
}

impl Handler<LeaveRooms> for RoomHub {
    type Result = ();

    fn handle(&mut self, msg: LeaveRooms, _: &mut Self::Context) {
        for room_id in &msg.room_ids {
            self.leave(&msg.tenant_id, room_id, msg.connection_id);
        }
    }
}

/// Relays a member's message to the room's other members; answers how many got it.
#[derive(Message)]
#[rtype(result = "Result<usize, RoomError>")]
pub struct SendToRoom {
    pub tenant_id: TenantId,
    pub room_id: Arc<str>,
    pub from: Uuid,
    pub message: Value,
}

impl Handler<SendToRoom> for RoomHub {
    type Result = Result<usize, RoomError>;

    fn handle(&mut self, msg: SendToRoom, _: &mut Self::Context) -> Self::Result {
        let room = self
            .rooms
            .get_mut(&(msg.tenant_id, msg.room_id.clone()))
            .ok_or(RoomError::NotJoined)?;
        let sender = room.members.get(&msg.from).ok_or(RoomError::NotJoined)?;
        let frame: Arc<str> = Arc::from(
            json!({
                "type": "room_message",
                "room_id": &*msg.room_id,
                "from": {"user_id": &*sender.user_id, "connection_id": msg.from},
                "message": msg.message,
                "timestamp": Utc::now(),
            })
            .to_string(),
        );
        Ok(room.relay(&frame, msg.from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriber::{SubscriberInbox, WhenFull};

    fn member(user: &str) -> (RoomMember, SubscriberQueue, SubscriberInbox) {
        let (queue, inbox) = SubscriberQueue::bounded(8, WhenFull::Disconnect);
        (
            RoomMember {
                connection_id: Uuid::new_v4(),
                user_id: user.into(),
            },
            queue,
            inbox,
        )
    }

    fn frame_type(inbox: &mut SubscriberInbox) -> Value {
        match inbox.rx.try_recv().expect("a frame") {
            Delivery::Frame(text) => serde_json::from_str(&text).unwrap(),
            Delivery::Event(_) => panic!("rooms send frames"),
        }
    }

    #[actix_rt::test]
    async fn members_hear_joins_messages_and_leaves_within_their_tenant() {
        let hub = RoomHub::new(10).start();
        let room: Arc<str> = "design".into();
        let join = |tenant: &str, m: &RoomMember, q: &SubscriberQueue| JoinRoom {
            tenant_id: tenant.into(),
            room_id: room.clone(),
            member: m.clone(),
            queue: q.clone(),
        };
        let (alice, alice_q, mut alice_in) = member("alice");
        let (bob, bob_q, mut bob_in) = member("bob");
        let (eve, eve_q, mut eve_in) = member("eve");
        assert!(
            hub.send(join("t1", &alice, &alice_q))
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );
        let others = hub.send(join("t1", &bob, &bob_q)).await.unwrap().unwrap();
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].user_id.as_ref(), "alice");
        assert!(
            hub.send(join("t2", &eve, &eve_q))
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );

        assert_eq!(frame_type(&mut alice_in)["type"], "room_member_joined");
        let relayed = hub
            .send(SendToRoom {
                tenant_id: "t1".into(),
                room_id: room.clone(),
                from: bob.connection_id,
                message: json!({"cursor": 3}),
            })
            .await
            .unwrap();
        assert_eq!(relayed, Ok(1));
        let message = frame_type(&mut alice_in);
        assert_eq!(message["message"]["cursor"], 3);
        assert_eq!(message["from"]["user_id"], "bob");
        assert!(bob_in.rx.try_recv().is_err(), "no echo to the sender");
        assert!(eve_in.rx.try_recv().is_err(), "another tenant's room");

        let not_member = hub
            .send(SendToRoom {
                tenant_id: "t2".into(),
                room_id: room.clone(),
                from: bob.connection_id,
                message: json!(1),
            })
            .await
            .unwrap();
        assert_eq!(not_member, Err(RoomError::NotJoined));

        hub.send(LeaveRooms {
            tenant_id: "t1".into(),
            room_ids: vec![room.clone()],
            connection_id: bob.connection_id,
        })
        .await
        .unwrap();
        assert_eq!(frame_type(&mut alice_in)["type"], "room_member_left");
    }

    #[actix_rt::test]
    async fn a_full_room_refuses_new_members() {
        let hub = RoomHub::new(1).start();
        let (a, aq, _ai) = member("a");
        let (b, bq, _bi) = member("b");
        for (m, q, ok) in [(a, aq, true), (b, bq, false)] {
            let result = hub
                .send(JoinRoom {
                    tenant_id: "t".into(),
                    room_id: "r".into(),
                    member: m,
                    queue: q,
                })
                .await
                .unwrap();
            assert_eq!(result.is_ok(), ok);
        }
    }
}

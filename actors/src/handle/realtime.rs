//! The handle's real-time side: recent events, subscriptions and their filters, and the
//! collaboration rooms.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::Gateway;
use crate::{
    bus::{RecentEvents, Refilter, Subscribe, SubscriberId, Subscription, Unsubscribe},
    caller::Caller,
    error::GatewayError,
    events::{EventFilter, PublishedEvent},
    rooms::{JoinRoom, LeaveRoom, LeaveRooms, RoomError, RoomMember, SendToRoom},
    subscriber::SubscriberQueue,
};

impl Gateway {
    /// The newest `count` retained events that `filter` lets through, oldest first.
    pub async fn recent_events(
        &self,
        filter: EventFilter,
        count: usize,
    ) -> Result<Vec<Arc<PublishedEvent>>, GatewayError> {
        self.ask(&self.bus, RecentEvents { filter, count }).await
    }

    /// Registers a subscriber of the events `filter` lets through; with `resume_after`, the
    /// reply's backlog holds what it missed (see [`Subscribe`]). In a cluster, what neither
    /// this node nor the broker still holds is read from the store before it is called a gap.
    pub async fn subscribe(
        &self,
        filter: EventFilter,
        resume_after: Option<u64>,
        queue: SubscriberQueue,
    ) -> Result<Subscription, GatewayError> {
        let session_id = filter.session_id;
        let mut subscription = self
            .ask(
                &self.bus,
                Subscribe {
                    filter: filter.clone(),
                    resume_after,
                    queue,
                },
            )
            .await?;
        if let (true, Some(last_seq), Some(session_id)) = (self.clustered, resume_after, session_id)
            && subscription.backlog.gap.is_some()
        {
            self.fill_from_store(&mut subscription.backlog, &filter, session_id, last_seq)
                .await;
        }
        Ok(subscription)
    }

    /// Replaces a subscriber's filter; false when the bus no longer knows it.
    pub async fn refilter(
        &self,
        id: SubscriberId,
        filter: EventFilter,
    ) -> Result<bool, GatewayError> {
        self.ask(&self.bus, Refilter { id, filter }).await
    }

    pub fn unsubscribe(&self, id: SubscriberId) {
        self.bus.do_send(Unsubscribe(id));
    }

    /// Joins a collaboration room of `caller`'s tenant; answers the other members.
    pub async fn join_room(
        &self,
        caller: &Caller,
        room_id: Arc<str>,
        connection_id: Uuid,
        queue: SubscriberQueue,
    ) -> Result<Result<Vec<RoomMember>, RoomError>, GatewayError> {
        let member = RoomMember {
            connection_id,
            user_id: caller.user_id.clone(),
        };
        self.ask(
            &self.rooms,
            JoinRoom {
                tenant_id: caller.tenant_id.clone(),
                room_id,
                member,
                queue,
            },
        )
        .await
    }

    /// Leaves a room; answers whether the connection was in it.
    pub async fn leave_room(
        &self,
        caller: &Caller,
        room_id: Arc<str>,
        connection_id: Uuid,
    ) -> Result<bool, GatewayError> {
        self.ask(
            &self.rooms,
            LeaveRoom {
                tenant_id: caller.tenant_id.clone(),
                room_id,
                connection_id,
            },
        )
        .await
    }

    /// Leaves every room of a closing connection, without waiting.
    pub fn leave_rooms(&self, caller: &Caller, room_ids: Vec<Arc<str>>, connection_id: Uuid) {
        if !room_ids.is_empty() {
            self.rooms.do_send(LeaveRooms {
                tenant_id: caller.tenant_id.clone(),
                room_ids,
                connection_id,
            });
        }
    }

    /// Relays `message` to the room's other members; answers how many got it.
    pub async fn send_to_room(
        &self,
        caller: &Caller,
        room_id: Arc<str>,
        from: Uuid,
        message: Value,
    ) -> Result<Result<usize, RoomError>, GatewayError> {
        self.ask(
            &self.rooms,
            SendToRoom {
                tenant_id: caller.tenant_id.clone(),
                room_id,
                from,
                message,
            },
        )
        .await
    }
}

//! The bus: numbering, retention, fan-out and resume.

use uuid::Uuid;

use super::*;
use crate::{
    Caller,
    subscriber::{Delivery, SubscriberInbox, WhenFull},
};

fn bus(history_len: usize, recent_capacity: usize) -> Addr<EventBus> {
    EventBus::new(BusConfig {
        history_len,
        retention: Duration::from_secs(60),
        recent_capacity,
    })
    .start()
}

fn session_event(session: Uuid, user: &str) -> Event {
    Event::new(EventType::SessionCreated, "test", "t".into()).in_session(session, user.into())
}

#[actix_rt::test]
async fn seq_counts_per_session_and_recent_is_bounded() {
    let bus = bus(10, 3);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for session in [a, a, b, a] {
        bus.send(Publish(session_event(session, "u")))
            .await
            .unwrap();
    }
    let all = Caller::open("t", "u");
    let recent = bus
        .send(RecentEvents {
            filter: EventFilter::visible_to(&all),
            count: 10,
        })
        .await
        .unwrap();
    let seqs: Vec<_> = recent
        .iter()
        .map(|e| (e.session_id.unwrap(), e.seq))
        .collect();
    assert_eq!(
        seqs,
        vec![(a, 2), (b, 1), (a, 3)],
        "ring keeps the newest 3, oldest first"
    );
    assert_eq!(bus.send(BusStats).await.unwrap().events_emitted, 4);
}

#[actix_rt::test]
async fn recent_respects_the_filter_and_count() {
    let bus = bus(10, 100);
    let session = Uuid::new_v4();
    for user in ["alice", "bob", "alice", "alice"] {
        bus.do_send(Publish(session_event(session, user)));
    }
    let alice = EventFilter::visible_to(&Caller::authenticated("t", "alice"));
    let recent = bus
        .send(RecentEvents {
            filter: alice,
            count: 2,
        })
        .await
        .unwrap();
    assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
}

fn subscriber(capacity: usize) -> (SubscriberQueue, SubscriberInbox) {
    SubscriberQueue::bounded(capacity, WhenFull::Disconnect)
}

fn seqs(inbox: &mut SubscriberInbox) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Ok(Delivery::Event(event)) = inbox.rx.try_recv() {
        seqs.push(event.seq);
    }
    seqs
}

#[actix_rt::test]
async fn subscribers_get_what_their_filter_lets_through() {
    let bus = bus(10, 10);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let alice = Caller::authenticated("t", "alice");
    let (queue, mut session_a) = subscriber(16);
    bus.send(Subscribe {
        filter: EventFilter {
            session_id: Some(a),
            ..EventFilter::visible_to(&alice)
        },
        resume_after: None,
        queue,
    })
    .await
    .unwrap();
    let (queue, mut everything) = subscriber(16);
    bus.send(Subscribe {
        filter: EventFilter::visible_to(&alice),
        resume_after: None,
        queue,
    })
    .await
    .unwrap();
    for (session, user) in [(a, "alice"), (b, "alice"), (a, "bob"), (a, "alice")] {
        bus.send(Publish(session_event(session, user)))
            .await
            .unwrap();
    }
    assert_eq!(seqs(&mut session_a), vec![1, 3], "session a, alice's only");
    assert_eq!(seqs(&mut everything), vec![1, 1, 3]);
}

#[actix_rt::test]
async fn a_full_queue_cuts_the_subscriber_off() {
    let bus = bus(10, 10);
    let session = Uuid::new_v4();
    let (queue, mut inbox) = subscriber(2);
    bus.send(Subscribe {
        filter: EventFilter::visible_to(&Caller::open("t", "u")),
        resume_after: None,
        queue,
    })
    .await
    .unwrap();
    for _ in 0..4 {
        bus.send(Publish(session_event(session, "u")))
            .await
            .unwrap();
    }
    assert!(inbox.status.overflowed());
    assert_eq!(seqs(&mut inbox), vec![1, 2]);
    assert!(inbox.rx.recv().await.is_none(), "the bus let go of it");
    assert_eq!(bus.send(BusStats).await.unwrap().subscribers, 0);
}

#[actix_rt::test]
async fn resume_returns_exactly_the_missed_events_then_live_ones() {
    let bus = bus(3, 10);
    let session = Uuid::new_v4();
    let caller = Caller::open("t", "u");
    let filter = EventFilter {
        session_id: Some(session),
        ..EventFilter::visible_to(&caller)
    };
    for _ in 0..4 {
        bus.send(Publish(session_event(session, "u")))
            .await
            .unwrap();
    }
    // History holds 2..=4: resuming after 2 is complete, after 0 has a gap (1).
    let (queue, mut inbox) = subscriber(8);
    let complete = bus
        .send(Subscribe {
            filter: filter.clone(),
            resume_after: Some(2),
            queue,
        })
        .await
        .unwrap();
    assert!(complete.backlog.gap.is_none());
    let backlog: Vec<_> = complete.backlog.events.iter().map(|e| e.seq).collect();
    assert_eq!(backlog, vec![3, 4]);
    bus.send(Publish(session_event(session, "u")))
        .await
        .unwrap();
    assert_eq!(
        seqs(&mut inbox),
        vec![5],
        "live events follow without overlap"
    );

    let (queue, _inbox) = subscriber(8);
    let gapped = bus
        .send(Subscribe {
            filter: filter.clone(),
            resume_after: Some(0),
            queue,
        })
        .await
        .unwrap();
    let gap = gapped.backlog.gap.expect("seq 1 and 2 fell out of history");
    let gap: serde_json::Value = serde_json::from_str(&gap.json).unwrap();
    assert_eq!(gap["type"], "stream.gap");
    assert_eq!(gap["metadata"]["from_seq"], 1);
    assert_eq!(gap["metadata"]["to_seq"], 2);
    assert_eq!(gapped.backlog.events.first().map(|e| e.seq), Some(3));

    let (queue, _inbox) = subscriber(8);
    let caught_up = bus
        .send(Subscribe {
            filter,
            resume_after: Some(5),
            queue,
        })
        .await
        .unwrap();
    assert!(caught_up.backlog.gap.is_none() && caught_up.backlog.events.is_empty());
}

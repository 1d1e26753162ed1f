//! Operator commands on the engine: acknowledge, latch, shelve and expiry, out of service, restart.
use super::*;
use crate::model::Reading;
use crate::model::SensorId;

fn engine() -> Engine {
    let mut e = Engine::new(
        "gw",
        "here",
        &[crate::pipeline::tests::sensor()],
        Timestamp(0),
    );
    e.set_acknowledge(true);
    e
}

fn feed(e: &mut Engine, t: i64, v: f64) -> Vec<Alert> {
    let mut out = Vec::new();
    e.evaluate(
        &mut Reading::new(SensorId::from("t"), Timestamp(t * 1000), v),
        &mut out,
    );
    out
}

fn cmd(e: &mut Engine, t: i64, cmd: Command) -> (Result<Vec<String>, String>, Vec<Alert>) {
    let mut out = Vec::new();
    let req = Request {
        cmd,
        by: "alice".into(),
        note: Some("checked".into()),
        request_id: None,
    };
    (e.command(&req, Timestamp(t * 1000), &mut out), out)
}

fn ack(id: &str) -> Command {
    Command::Ack { id: id.into() }
}

#[test]
fn acknowledged_alarm_clears_away_and_an_unacknowledged_one_stands_until_acknowledged() {
    let mut e = engine();
    let raised = feed(&mut e, 1, 85.0);
    assert_eq!(raised[0].operator.acked, Some(false));
    let id = raised[0].id.clone();
    let (r, ev) = cmd(&mut e, 2, ack(&id));
    assert_eq!(r, Ok(vec![id.clone()]));
    assert_eq!(
        (
            ev[0].state,
            ev[0].operator.active,
            ev[0].operator.by.as_deref()
        ),
        (AlertState::Acknowledged, Some(true), Some("alice"))
    );
    assert!(ev[0].standing());
    assert!(cmd(&mut e, 3, ack(&id))
        .0
        .unwrap_err()
        .contains("already acknowledged"));
    // An escalation needs a new acknowledgement.
    let esc = feed(&mut e, 4, 96.0);
    assert_eq!(
        (esc[0].state, esc[0].operator.acked),
        (AlertState::Escalated, Some(false))
    );
    cmd(&mut e, 5, ack(&id)).0.expect("ack the escalation");
    let cleared = feed(&mut e, 6, 50.0);
    assert_eq!(
        (cleared[0].state, cleared[0].standing()),
        (AlertState::Cleared, false)
    );
    assert!(e.active().is_empty());

    // Cleared unacknowledged: latched, still listed, until acknowledged.
    let id2 = feed(&mut e, 7, 85.0)[0].id.clone();
    let cleared = feed(&mut e, 8, 50.0);
    assert!(
        cleared[0].standing(),
        "returned to normal unacknowledged stands"
    );
    let listed = e.active();
    assert_eq!(
        (listed.len(), listed[0].returned, listed[0].acked),
        (1, true, Some(false))
    );
    let (r, ev) = cmd(&mut e, 9, ack(&id2));
    assert_eq!(r, Ok(vec![id2.clone()]));
    assert_eq!(
        (ev[0].operator.active, ev[0].standing()),
        (Some(false), false)
    );
    assert!(e.active().is_empty());
    assert!(cmd(&mut e, 10, ack(&id2))
        .0
        .unwrap_err()
        .contains("no active or unacknowledged alarm"));
}

#[test]
fn a_shelved_sensor_raises_silently_and_announces_again_when_the_shelf_expires() {
    let mut e = engine();
    let until = Timestamp(11_000);
    let shelve = Command::Shelve {
        target: Target::Sensor("t".into()),
        until,
    };
    assert_eq!(cmd(&mut e, 1, shelve).0, Ok(vec![]), "no alarm active yet");
    let raised = feed(&mut e, 2, 85.0);
    assert_eq!(raised[0].operator.shelved_until, Some(until));
    assert!(!raised[0].annunciates());
    let mut out = Vec::new();
    e.tick(Timestamp(10_000), &mut out);
    assert!(out.is_empty(), "still shelved");
    feed(&mut e, 10, 86.0);
    e.tick(Timestamp(11_000), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].state, out[0].operator.active),
        (AlertState::Unshelved, Some(true))
    );
    assert!(out[0].annunciates());
    // A shelf on one alarm, lifted by command.
    let id = out[0].id.clone();
    let s = Command::Shelve {
        target: Target::Alert(id.clone()),
        until: Timestamp(99_000),
    };
    assert_eq!(cmd(&mut e, 12, s).0, Ok(vec![id.clone()]));
    let (r, ev) = cmd(
        &mut e,
        13,
        Command::Unshelve {
            target: Target::Alert(id.clone()),
        },
    );
    assert_eq!(
        (r, ev[0].state),
        (Ok(vec![id.clone()]), AlertState::Unshelved)
    );
    assert_eq!(
        cmd(
            &mut e,
            14,
            Command::Unshelve {
                target: Target::Alert(id)
            }
        )
        .0,
        Err("not shelved".into())
    );
}

#[test]
fn out_of_service_clears_and_suppresses_until_back_in_service_and_all_of_it_survives_a_restart() {
    let mut e = engine();
    let id = feed(&mut e, 1, 85.0)[0].id.clone();
    let (r, ev) = cmd(&mut e, 2, Command::OutOfService { sensor: "t".into() });
    let r = r.expect("accepted");
    assert_eq!(r[0], id);
    assert_eq!(
        (ev[0].state, ev[0].standing()),
        (AlertState::Cleared, false),
        "removed, nothing to acknowledge"
    );
    assert_eq!(
        (ev[1].kind, ev[1].state),
        (AlertType::OutOfService, AlertState::Raised)
    );
    assert!(
        feed(&mut e, 3, 99.0).is_empty(),
        "no alarm while out of service"
    );
    let mut out = Vec::new();
    e.tick(Timestamp(60_000), &mut out);
    assert!(out.is_empty(), "no offline while out of service");
    assert!(
        cmd(&mut e, 61, Command::OutOfService { sensor: "t".into() })
            .0
            .unwrap_err()
            .contains("already")
    );

    // Restart: the out-of-service record and a latched alarm survive.
    let snap = e.snapshot();
    let mut e2 = engine();
    e2.restore(&snap, Timestamp(62_000)).expect("restore");
    assert!(feed(&mut e2, 63, 99.0).is_empty());
    let (r, ev) = cmd(&mut e2, 64, Command::InService { sensor: "t".into() });
    assert!(r.is_ok());
    assert_eq!(
        (ev[0].kind, ev[0].state),
        (AlertType::OutOfService, AlertState::Cleared)
    );
    let back = feed(&mut e2, 65, 99.0);
    assert_eq!(back[0].state, AlertState::Raised, "evaluated again");
    assert!(cmd(
        &mut e2,
        66,
        Command::InService {
            sensor: "nosuch".into()
        }
    )
    .0
    .unwrap_err()
    .contains("no sensor"));

    let mut off = Engine::new(
        "gw",
        "here",
        &[crate::pipeline::tests::sensor()],
        Timestamp(0),
    );
    let mut out = Vec::new();
    let req = Request {
        cmd: ack("x"),
        by: "a".into(),
        note: None,
        request_id: None,
    };
    assert!(off
        .command(&req, Timestamp(0), &mut out)
        .unwrap_err()
        .contains("disabled"));
}

/// ISA-18.2: an alarm comes back from the shelf unacknowledged, also when it was acknowledged before it was shelved
/// (by command and by expiry).
#[test]
fn an_alarm_acknowledged_before_its_shelf_returns_unacknowledged() {
    let mut e = engine();
    let raised = feed(&mut e, 1, 85.0);
    let id = raised[0].id.clone();
    assert_eq!(cmd(&mut e, 2, ack(&id)).0, Ok(vec![id.clone()]));
    let shelve = |until| Command::Shelve {
        target: Target::Alert(id.clone()),
        until: Timestamp(until),
    };
    assert_eq!(cmd(&mut e, 3, shelve(60_000)).0, Ok(vec![id.clone()]));
    let (_, ev) = cmd(
        &mut e,
        4,
        Command::Unshelve {
            target: Target::Alert(id.clone()),
        },
    );
    assert_eq!(
        (ev[0].state, ev[0].operator.acked),
        (AlertState::Unshelved, Some(false))
    );
    assert!(ev[0].annunciates());
    assert_eq!(
        cmd(&mut e, 5, ack(&id)).0,
        Ok(vec![id.clone()]),
        "can be acknowledged again"
    );
    assert_eq!(cmd(&mut e, 6, shelve(7_000)).0, Ok(vec![id.clone()]));
    let mut out = Vec::new();
    e.tick(Timestamp(7_000), &mut out);
    assert_eq!(
        (out[0].state, out[0].operator.acked),
        (AlertState::Unshelved, Some(false))
    );
}

/// A request id is executed once: the same id again is refused, changes nothing, and the refusal survives a
/// restart through the snapshot.
#[test]
fn a_request_id_runs_once_also_after_a_restart() {
    let mut e = engine();
    let raised = feed(&mut e, 1, 85.0);
    let id = raised[0].id.clone();
    let req = |rid: &str| Request {
        cmd: ack(&id),
        by: "alice".into(),
        note: None,
        request_id: Some(format!("\"{rid}\"")),
    };
    let mut out = Vec::new();
    assert_eq!(
        e.command(&req("r1"), Timestamp(2_000), &mut out),
        Ok(vec![id.clone()])
    );
    let mut again = Vec::new();
    let dup = e.command(&req("r1"), Timestamp(3_000), &mut again);
    assert!(dup.unwrap_err().contains("duplicate request_id"));
    assert!(again.is_empty(), "nothing changed");
    let snap = e.snapshot();
    let mut restarted = engine();
    restarted.restore(&snap, Timestamp(4_000)).expect("restore");
    let mut after = Vec::new();
    let dup = restarted.command(&req("r1"), Timestamp(5_000), &mut after);
    assert!(dup.unwrap_err().contains("executed once already"));
    assert!(after.is_empty());
}

use super::*;

fn policy() -> Policy {
    Policy {
        max_attempts: 3,
        backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(25),
        flapping: Flapping {
            count: 2,
            window: Duration::from_secs(3600),
        },
        resolve_within: Duration::from_secs(30),
    }
}

fn facts() -> Facts {
    Facts {
        now: 100.0,
        policy: policy(),
        dry_run: false,
        configured: true,
        late: false,
        healed_in_window: 0,
        hold: None,
        quiet: None,
    }
}

fn open(state: IncidentState) -> Open {
    Open {
        state,
        attempts: 1,
        running: false,
        healed_at: None,
        rechecks: 0,
    }
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let p = policy();
    assert_eq!(p.delay_after(1), Duration::from_secs(10));
    assert_eq!(p.delay_after(2), Duration::from_secs(20));
    assert_eq!(p.delay_after(3), Duration::from_secs(25));
    assert_eq!(p.delay_after(400), Duration::from_secs(25));
    let running = Open {
        running: true,
        ..open(IncidentState::Acting)
    };
    assert_eq!(
        step(Some(&running), Input::Failed, &facts()),
        Some(Transition::Retry { at: 110.0 })
    );
    let last = Open {
        attempts: 3,
        ..running
    };
    assert_eq!(
        step(Some(&last), Input::Failed, &facts()),
        Some(Transition::Escalate(Why::Exhausted))
    );
}

#[test]
fn occurrences_open_join_or_supersede() {
    let f = facts();
    let occ = |s: f64| Input::Occurrence { starts_at: Some(s) };
    assert_eq!(
        step(None, occ(5.0), &f),
        Some(Transition::Open(New::Acting))
    );
    let flapping = Facts {
        healed_in_window: 2,
        ..f
    };
    assert_eq!(
        step(None, occ(5.0), &flapping),
        Some(Transition::Open(New::Escalated(Why::Flapping {
            healed: 2
        })))
    );
    for state in [
        IncidentState::Acting,
        IncidentState::Verifying,
        IncidentState::Waiting,
    ] {
        assert_eq!(
            step(Some(&open(state)), occ(5.0), &f),
            Some(Transition::Join)
        );
    }
    assert_eq!(
        step(Some(&open(IncidentState::Escalated)), occ(5.0), &f),
        Some(Transition::JoinEscalated)
    );
    let healed = Open {
        healed_at: Some(10.0),
        ..open(IncidentState::Healed)
    };
    assert_eq!(step(Some(&healed), occ(9.0), &f), Some(Transition::Join));
    assert_eq!(
        step(Some(&healed), Input::Occurrence { starts_at: None }, &f),
        Some(Transition::Join)
    );
    assert_eq!(
        step(Some(&healed), occ(11.0), &f),
        Some(Transition::Supersede(New::Acting))
    );
    assert_eq!(
        step(Some(&healed), occ(11.0), &flapping),
        Some(Transition::Supersede(New::Escalated(Why::Flapping {
            healed: 2
        })))
    );
    let never = Facts {
        policy: Policy {
            flapping: Flapping {
                count: 0,
                window: Duration::from_secs(3600),
            },
            ..policy()
        },
        healed_in_window: 1000,
        ..f
    };
    assert_eq!(
        step(None, occ(1.0), &never),
        Some(Transition::Open(New::Acting))
    );
}

#[test]
fn dry_run_gates_every_execution() {
    let dry = Facts {
        dry_run: true,
        ..facts()
    };
    assert_eq!(
        step(None, Input::Occurrence { starts_at: None }, &dry),
        Some(Transition::Open(New::DryRun))
    );
    for (state, input) in [
        (IncidentState::Waiting, Input::Due),
        (IncidentState::Acting, Input::Due),
        (IncidentState::Acting, Input::Start),
    ] {
        assert_eq!(
            step(Some(&open(state)), input, &dry),
            Some(Transition::Escalate(Why::DryRun)),
            "{state} {input:?}"
        );
    }
}

#[test]
fn a_heal_that_does_not_hold_is_a_failed_attempt_of_the_same_incident() {
    let f = facts();
    let healed = Open {
        healed_at: Some(50.0),
        ..open(IncidentState::Healed)
    };
    assert_eq!(
        step(Some(&healed), Input::Recheck { verified: true }, &f),
        Some(Transition::RecheckAgain { at: 130.0 })
    );
    let again = Open {
        rechecks: 1,
        ..healed
    };
    assert_eq!(
        step(Some(&again), Input::Recheck { verified: true }, &f),
        Some(Transition::Retry { at: 110.0 })
    );
    assert_eq!(
        step(Some(&healed), Input::Recheck { verified: false }, &f),
        Some(Transition::Retry { at: 110.0 })
    );
    let spent = Open {
        attempts: 3,
        ..healed
    };
    assert_eq!(
        step(Some(&spent), Input::Recheck { verified: false }, &f),
        Some(Transition::Escalate(Why::Exhausted))
    );
}

/// Every state, input and combination of facts: `step` takes only rows of the table, each
/// such transition matches exactly one row, and every row is taken by some case.
#[test]
fn step_takes_exactly_the_transitions_of_the_table() {
    let mut states: Vec<Option<Open>> = vec![None];
    for state in IncidentState::OPEN {
        for attempts in [0, 1, 3] {
            for running in [false, true] {
                for rechecks in [0, 1] {
                    for healed_at in [None, Some(50.0)] {
                        states.push(Some(Open {
                            state: *state,
                            attempts,
                            running,
                            healed_at,
                            rechecks,
                        }));
                    }
                }
            }
        }
    }
    let inputs = [
        Input::Occurrence { starts_at: None },
        Input::Occurrence {
            starts_at: Some(10.0),
        },
        Input::Occurrence {
            starts_at: Some(90.0),
        },
        Input::Due,
        Input::Start,
        Input::Returned,
        Input::Verified,
        Input::Failed,
        Input::Refused,
        Input::Recheck { verified: true },
        Input::Recheck { verified: false },
        Input::Resolved { delivered: true },
        Input::Resolved { delivered: false },
        Input::Unconfigured,
        Input::Reset,
        Input::Release,
    ];
    let mut taken = vec![0usize; TABLE.len()];
    for open in &states {
        for input in inputs {
            for bits in 0..64u32 {
                let f = Facts {
                    dry_run: bits & 1 != 0,
                    configured: bits & 2 == 0,
                    late: bits & 4 != 0,
                    healed_in_window: if bits & 8 != 0 { 5 } else { 0 },
                    hold: (bits & 16 != 0).then_some(Hold::Paused),
                    quiet: (bits & 32 != 0).then_some(CloseReason::AlertResolved),
                    ..facts()
                };
                let Some(t) = step(open.as_ref(), input, &f) else {
                    continue;
                };
                let from = open.map(|o| o.state);
                let rows: Vec<usize> = TABLE
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.from.contains(&from) && r.inputs.contains(&input.name()) && (r.takes)(&t)
                    })
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(
                    rows.len(),
                    1,
                    "{from:?} --{input:?}--> {t:?} with {f:?} matches rows {rows:?}"
                );
                taken[rows[0]] += 1;
                // A transition never leaves an open incident without a next time or a page.
                if let Transition::Start { attempt } = t {
                    assert!(!f.dry_run && attempt > open.map_or(0, |o| o.attempts));
                }
            }
        }
    }
    for (row, n) in TABLE.iter().zip(&taken) {
        assert!(*n > 0, "row never taken: {row:?}");
    }
}

#[test]
fn decisions_read_as_words() {
    let d = Decision::Joined {
        incident: 4,
        state: IncidentState::Waiting,
        next_attempt_at: Some(1_795_341_660.0),
    };
    assert_eq!(
        d.to_string(),
        "joined incident=4 state=waiting next_attempt_at=2026-11-22T10:01:00Z"
    );
    assert_eq!(
        Decision::Act {
            incident: 1,
            attempt: 2,
            max_attempts: 3
        }
        .to_string(),
        "act incident=1 attempt=2/3"
    );
    assert_eq!(
        Decision::Escalated {
            incident: 9,
            why: Why::Flapping { healed: 3 }
        }
        .to_string(),
        "skipped_flapping incident=9 healed_in_window=3"
    );
}

/// `docs/remediator.md` draws exactly the model's table: the diagram and the table of every
/// transition, as `diagram()` and `markdown()` render them. `STACKMEDIC_PRINT_MODEL=1` prints
/// them for the docs.
#[test]
fn the_docs_draw_every_transition_and_only_those() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/remediator.md"
    ))
    .expect("docs/remediator.md");
    let diagram = format!("```mermaid\n{}```\n", diagram());
    let table = markdown();
    if std::env::var_os("STACKMEDIC_PRINT_MODEL").is_some() {
        println!("{diagram}\n{table}");
    }
    assert!(
        docs.contains(&diagram),
        "docs/remediator.md does not draw the model's diagram; it is:\n{diagram}"
    );
    assert!(
        docs.contains(&table),
        "docs/remediator.md does not list the model's transitions; they are:\n{table}"
    );
    assert_eq!(
        docs.matches("stateDiagram-v2").count(),
        1,
        "one diagram of the incident model, the table's"
    );
}

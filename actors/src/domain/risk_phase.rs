//! The phases of a strategy run's risk actor (docs/ARCHITECTURE.md §4.8): what each input does
//! to the phase, which state is committed to the strategy's row, and what follows the commit.
//! The actor ([`crate::risk`]) performs the steps; the rules themselves are in
//! [`crate::domain::risk`].
//!
//! `Monitoring → Triggered → Exiting → Exited`, or `ExitFailed` (a human must look), or
//! `Paused` (kill switch or operator; resumed by an operator). `Triggered` lasts from the
//! decision until its commit: the exit is requested only once `Exiting` is stored.

use entity::strategies::RiskState;

/// What happened to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A rule triggered; `auto_exit` is false when automatic exit is disabled for it (the
    /// breach is only recorded).
    Breach {
        /// Automatic exit is enabled for the rule.
        auto_exit: bool,
    },
    /// An operator asked for the run's legs to be exited.
    ManualExit,
    /// Rules stop being evaluated (kill switch or operator).
    Pause,
    /// An operator resumes evaluation.
    Resume,
    /// The run has no open leg left.
    RunClosed,
    /// The exit could not be requested, or the gateway gave up on a leg.
    ExitFailed,
    /// The run's P&L is not a finite number: no rule can be evaluated.
    PnlInvalid,
    /// `Exiting` was committed: the exit may be requested.
    ExitCommitted,
    /// A leg was registered into the run.
    LegJoined,
    /// The state was read back from the strategy's row (after a restart).
    Restored(RiskState),
}

/// What follows the step (after its commit, when it commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Nothing more.
    Nothing,
    /// Ask the gateway to exit the run's open legs.
    Exit,
    /// Ask again for an exit begun before a restart (its reason is read back).
    ResumeExit,
    /// The run is over: the actor stops.
    Stop,
}

/// The outcome of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing changes.
    Stay,
    /// Refused, with the reason; nothing changes.
    Refuse(String),
    /// The phase becomes `to`; `commit` is written to the strategy's row first when set, and
    /// `then` follows (after the commit).
    Go {
        /// The new phase.
        to: RiskState,
        /// The state written to the strategy's row before `then`, if any.
        commit: Option<RiskState>,
        /// What follows.
        then: After,
    },
}

fn go(to: RiskState, commit: Option<RiskState>, then: After) -> Step {
    Step::Go { to, commit, then }
}

/// The step an input makes from `phase`.
pub fn step(phase: RiskState, input: Input) -> Step {
    use RiskState::*;
    let exiting = matches!(phase, Triggered | Exiting);
    match input {
        Input::Breach { .. } if phase != Monitoring => Step::Stay,
        Input::Breach { auto_exit: false } => go(Monitoring, Some(Monitoring), After::Nothing),
        Input::Breach { auto_exit: true } => go(Triggered, Some(Exiting), After::Exit),
        Input::ManualExit if exiting => Step::Refuse(format!(
            "the strategy is already {phase}; nothing new was sent"
        )),
        Input::ManualExit if phase == Exited => {
            Step::Refuse("every leg of the run is already closed".into())
        }
        Input::ManualExit => go(Triggered, Some(Exiting), After::Exit),
        Input::Pause => go(Paused, Some(Paused), After::Nothing),
        Input::Resume if matches!(phase, Paused | ExitFailed) => {
            go(Monitoring, Some(Monitoring), After::Nothing)
        }
        Input::Resume => Step::Stay,
        Input::RunClosed if phase == Exited => Step::Stay,
        Input::RunClosed if phase == Paused => go(Paused, Some(Paused), After::Stop),
        Input::RunClosed => go(Exited, Some(Exited), After::Stop),
        Input::ExitFailed | Input::PnlInvalid if phase == Exited => Step::Stay,
        Input::ExitFailed | Input::PnlInvalid => go(ExitFailed, Some(ExitFailed), After::Nothing),
        Input::ExitCommitted if phase == Triggered => go(Exiting, None, After::Exit),
        // Paused (or failed) between the decision and its commit: the exit still goes out,
        // flattening comes first.
        Input::ExitCommitted => go(phase, None, After::Exit),
        Input::LegJoined if phase == Exiting => go(Exiting, None, After::Exit),
        Input::LegJoined => Step::Stay,
        // A transition that was not committed as Exiting is resumed as one.
        Input::Restored(Triggered | Exiting) => go(Exiting, None, After::ResumeExit),
        Input::Restored(stored) => go(stored, None, After::Nothing),
    }
}

/// Rules are evaluated in this phase.
pub fn evaluates(phase: RiskState) -> bool {
    phase == RiskState::Monitoring
}

#[cfg(test)]
mod tests {
    use super::*;
    use RiskState::*;

    const ALL: [RiskState; 6] = [Monitoring, Triggered, Exiting, Exited, ExitFailed, Paused];

    #[test]
    fn a_breach_exits_only_from_monitoring_and_commits_exiting_first() {
        assert_eq!(
            step(Monitoring, Input::Breach { auto_exit: true }),
            go(Triggered, Some(Exiting), After::Exit)
        );
        for phase in ALL.into_iter().filter(|p| *p != Monitoring) {
            assert_eq!(step(phase, Input::Breach { auto_exit: true }), Step::Stay);
        }
    }

    #[test]
    fn a_breach_without_auto_exit_is_recorded_and_keeps_monitoring() {
        assert_eq!(
            step(Monitoring, Input::Breach { auto_exit: false }),
            go(Monitoring, Some(Monitoring), After::Nothing)
        );
    }

    #[test]
    fn a_manual_exit_is_refused_while_one_is_under_way() {
        for phase in [Triggered, Exiting] {
            let Step::Refuse(why) = step(phase, Input::ManualExit) else {
                panic!("{phase}: not refused");
            };
            assert!(why.contains(phase.as_str()), "{why}");
        }
        assert!(matches!(step(Exited, Input::ManualExit), Step::Refuse(_)));
        for phase in [Monitoring, Paused, ExitFailed] {
            assert_eq!(
                step(phase, Input::ManualExit),
                go(Triggered, Some(Exiting), After::Exit)
            );
        }
    }

    #[test]
    fn pause_is_committed_from_any_phase() {
        for phase in ALL {
            assert_eq!(
                step(phase, Input::Pause),
                go(Paused, Some(Paused), After::Nothing)
            );
        }
    }

    #[test]
    fn resume_only_from_paused_or_exit_failed() {
        for phase in [Paused, ExitFailed] {
            assert_eq!(
                step(phase, Input::Resume),
                go(Monitoring, Some(Monitoring), After::Nothing)
            );
        }
        for phase in [Monitoring, Triggered, Exiting, Exited] {
            assert_eq!(step(phase, Input::Resume), Step::Stay);
        }
    }

    #[test]
    fn a_closed_run_stops_the_actor_and_a_pause_stays() {
        assert_eq!(
            step(Exiting, Input::RunClosed),
            go(Exited, Some(Exited), After::Stop)
        );
        assert_eq!(
            step(Monitoring, Input::RunClosed),
            go(Exited, Some(Exited), After::Stop)
        );
        assert_eq!(
            step(Paused, Input::RunClosed),
            go(Paused, Some(Paused), After::Stop)
        );
        assert_eq!(step(Exited, Input::RunClosed), Step::Stay);
    }

    #[test]
    fn failures_need_a_human() {
        for input in [Input::ExitFailed, Input::PnlInvalid] {
            for phase in [Monitoring, Triggered, Exiting, Paused, ExitFailed] {
                assert_eq!(
                    step(phase, input),
                    go(ExitFailed, Some(ExitFailed), After::Nothing)
                );
            }
            assert_eq!(step(Exited, input), Step::Stay);
        }
    }

    #[test]
    fn the_exit_is_requested_once_exiting_is_committed() {
        assert_eq!(
            step(Triggered, Input::ExitCommitted),
            go(Exiting, None, After::Exit)
        );
        // A pause that came between decision and commit does not hold the exit back.
        assert_eq!(
            step(Paused, Input::ExitCommitted),
            go(Paused, None, After::Exit)
        );
    }

    #[test]
    fn a_leg_joining_a_run_being_exited_is_exited_too() {
        assert_eq!(
            step(Exiting, Input::LegJoined),
            go(Exiting, None, After::Exit)
        );
        for phase in [Monitoring, Triggered, Paused, ExitFailed, Exited] {
            assert_eq!(step(phase, Input::LegJoined), Step::Stay);
        }
    }

    #[test]
    fn a_restored_exit_resumes_and_other_states_stay() {
        for stored in [Triggered, Exiting] {
            assert_eq!(
                step(Monitoring, Input::Restored(stored)),
                go(Exiting, None, After::ResumeExit)
            );
        }
        for stored in [Monitoring, Exited, ExitFailed, Paused] {
            assert_eq!(
                step(Monitoring, Input::Restored(stored)),
                go(stored, None, After::Nothing)
            );
        }
    }

    #[test]
    fn only_monitoring_evaluates() {
        assert_eq!(
            ALL.into_iter()
                .filter(|p| evaluates(*p))
                .collect::<Vec<_>>(),
            vec![Monitoring]
        );
    }
}

//! A run of simulated volunteers: enlist them, start one task each, stop them
//! all at the end, and report. The `volunteers` subcommand is this alone.

use crate::api::Api;
use crate::cli::{ApiArgs, CrewArgs, VolunteersArgs};
use crate::roster::Roster;
use crate::session::Session;
use crate::stats::{Recorder, Report};
use crate::truth::Truth;
use crate::volunteer::{Crew, Volunteer};
use anyhow::Context;
use spotcheck_simulation::demo::generate;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The duration ran out.
    Deadline,
    /// Ctrl-C.
    Interrupted,
    /// Every volunteer stopped by itself (vote budget spent).
    VolunteersDone,
    /// The demo saw every task closed.
    AllTasksClosed,
}

/// Volunteers at work.
pub struct LoadRun {
    crew: Arc<Crew>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    started: Instant,
    volunteers: usize,
}

/// Signs in the admin named in `args`.
pub async fn admin_session(api: &Api, rec: &Recorder, args: &ApiArgs) -> anyhow::Result<Session> {
    Session::login(api, rec, &args.admin_user, &args.admin_password)
        .await
        .with_context(|| format!("signing in as {} at {}", args.admin_user, api.base()))
}

impl LoadRun {
    /// Enlists `volunteers` volunteers and starts them on the market of `truth`.
    pub async fn start(
        crew: Crew,
        admin: &Session,
        args: &ApiArgs,
        volunteers: usize,
    ) -> anyhow::Result<Self> {
        let roster = Roster {
            prefix: args.user_prefix.clone(),
            password: args.volunteer_password.clone(),
            count: volunteers,
        };
        eprintln!(
            "enlisting {volunteers} volunteers from {}",
            roster.username(0)
        );
        let sessions = roster.enlist(&crew.api, &crew.rec, admin).await?;
        let crew = Arc::new(crew);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for (index, session) in sessions.into_iter().enumerate() {
            let volunteer = Volunteer::new(index, crew.seed, session);
            tasks.spawn(volunteer.run(Arc::clone(&crew), stop.clone()));
        }
        eprintln!("{volunteers} volunteers at work");
        Ok(Self {
            crew,
            stop,
            tasks,
            started: Instant::now(),
            volunteers,
        })
    }

    /// What the run shares with its volunteers (the API client, the truth, the recorder).
    pub fn crew(&self) -> Arc<Crew> {
        Arc::clone(&self.crew)
    }

    /// Waits until every volunteer has stopped by itself (cancel-safe).
    pub async fn all_stopped(&mut self) {
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                eprintln!("a volunteer task failed: {e}");
            }
        }
    }

    /// Stops every volunteer, waits for them and reports the load.
    pub async fn finish(mut self) -> Report {
        self.stop.cancel();
        self.all_stopped().await;
        self.crew
            .rec
            .report(self.volunteers, self.started.elapsed())
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Builds the crew shared by the `volunteers` and `demo` subcommands.
pub fn crew(
    api: Api,
    rec: Arc<Recorder>,
    args: &CrewArgs,
    seed: u64,
    listings: usize,
    gold: &[spotcheck_simulation::demo::DemoListing],
) -> Crew {
    Crew {
        api,
        truth: Truth::from_demo(&generate(seed, listings)).with(gold),
        rec,
        think_ms: args.think_ms,
        max_votes: args.max_votes_per_volunteer,
        seed,
    }
}

/// `spotcheck-sim volunteers`: volunteers (or, with no think time, load) against a running API.
pub async fn run(args: VolunteersArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api.api, args.count)?;
    let rec = Arc::new(Recorder::default());
    let admin = admin_session(&api, &rec, &args.api).await?;
    let crew = crew(api, rec, &args.crew, args.seed, args.listings_count, &[]);
    let mut run = LoadRun::start(crew, &admin, &args.api, args.count).await?;
    let deadline = tokio::time::Instant::now() + args.crew.duration();
    let ending = tokio::select! {
        _ = tokio::time::sleep_until(deadline) => Ending::Deadline,
        _ = tokio::signal::ctrl_c() => Ending::Interrupted,
        _ = run.all_stopped() => Ending::VolunteersDone,
    };
    eprintln!("stopping: {ending:?}");
    let report = run.finish().await;
    println!("{report}");
    if let Some(path) = &args.crew.json_report {
        write_json(path, &report)?;
    }
    Ok(())
}

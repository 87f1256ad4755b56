//! A crowd shaped like a real one: careful and careless reviewers whose
//! sensitivity (catching a fake) and specificity (clearing a genuine listing)
//! are drawn separately, spammers answering at random, volunteers who always
//! say "genuine", colluding pairs, uneven activity, and arrivals over time.
//!
//! [`Roster`] draws who answers next: a volunteer is drawn in proportion to
//! their activity among those who have arrived and not been taken out.

use rand::Rng;
use serde::Serialize;
use spotcheck_shared::aggregate::Verdict;

/// Which kind of volunteer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Looks closely: high sensitivity and specificity.
    Careful,
    /// Honest but hasty: misses many fakes, now and then accuses a genuine one.
    Careless,
    /// Any of the three verdicts with equal probability.
    Random,
    /// Always "genuine".
    AlwaysGenuine,
    /// Half of a pair that gives one shared random verdict per listing.
    Colluding,
}

impl Group {
    /// Every group, in report order.
    pub const ALL: [Group; 5] = [
        Group::Careful,
        Group::Careless,
        Group::Random,
        Group::AlwaysGenuine,
        Group::Colluding,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Group::Careful => "careful",
            Group::Careless => "careless",
            Group::Random => "random",
            Group::AlwaysGenuine => "always genuine",
            Group::Colluding => "colluding",
        }
    }
}

/// One simulated volunteer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Volunteer {
    /// Their kind.
    pub group: Group,
    /// P(says counterfeit | counterfeit) for honest groups.
    pub sensitivity: f64,
    /// P(says genuine | genuine) for honest groups.
    pub specificity: f64,
    /// P(says unsure), for honest groups.
    pub unsure: f64,
    /// When they join, as a share of the run (0 = from the start).
    pub arrival: f64,
    /// Relative rate at which they claim work.
    pub activity: f64,
    /// The other half of a colluding pair.
    pub partner: Option<u32>,
    /// What a colluding pair's shared verdicts derive from (the same for both).
    pub pair_key: u64,
}

impl Volunteer {
    /// Their verdict on listing `listing` (an id colluders agree on) whose
    /// truth is `counterfeit`.
    pub fn answer(&self, listing: u64, counterfeit: bool, rng: &mut impl Rng) -> Verdict {
        let (right, wrong) = if counterfeit {
            (Verdict::Counterfeit, Verdict::Genuine)
        } else {
            (Verdict::Genuine, Verdict::Counterfeit)
        };
        match self.group {
            Group::Careful | Group::Careless => {
                let x: f64 = rng.random();
                let p_right = if counterfeit {
                    self.sensitivity
                } else {
                    self.specificity
                };
                if x < self.unsure {
                    Verdict::Unsure
                } else if x < self.unsure + (1.0 - self.unsure) * p_right {
                    right
                } else {
                    wrong
                }
            }
            Group::Random => VERDICTS[rng.random_range(0..3)],
            Group::AlwaysGenuine => Verdict::Genuine,
            Group::Colluding => {
                VERDICTS[(mix(self.pair_key ^ listing.rotate_left(17)) % 3) as usize]
            }
        }
    }
}

const VERDICTS: [Verdict; 3] = [Verdict::Genuine, Verdict::Counterfeit, Verdict::Unsure];

/// splitmix64's finaliser: a fixed, well-spread hash of a number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The make-up of a crowd.
///
/// Defaults, after the seed program: 10% random, 5% always "genuine", 2% in
/// colluding pairs, 28% careless (sensitivity 0.55-0.80, specificity
/// 0.80-0.95), the rest careful (sensitivity 0.82-0.97, specificity
/// 0.93-0.995); honest volunteers say "unsure" up to 4% of the time. 40% are
/// there from the start, the rest arrive uniformly over the first half of the
/// run; activity is 1/u for u uniform in (0.25, 1], so the busiest claim four
/// times as often as the least busy. A colluder's partner lands on the same
/// listing 30% of the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrowdShape {
    /// Share answering at random.
    pub random: f64,
    /// Share always saying "genuine".
    pub always_genuine: f64,
    /// Share in colluding pairs.
    pub colluding: f64,
    /// Share careless (the rest are careful).
    pub careless: f64,
    /// Sensitivity range of careful volunteers.
    pub careful_sensitivity: (f64, f64),
    /// Specificity range of careful volunteers.
    pub careful_specificity: (f64, f64),
    /// Sensitivity range of careless volunteers.
    pub careless_sensitivity: (f64, f64),
    /// Specificity range of careless volunteers.
    pub careless_specificity: (f64, f64),
    /// Most "unsure" share of an honest volunteer.
    pub max_unsure: f64,
    /// Share present from the start.
    pub present_at_start: f64,
    /// The others arrive uniformly before this share of the run.
    pub arrivals_until: f64,
    /// How often a colluder's partner manages to claim the same listing
    /// (work is handed out, not chosen, so a pair cannot always meet).
    pub pair_meets: f64,
}

impl Default for CrowdShape {
    fn default() -> Self {
        CrowdShape {
            random: 0.10,
            always_genuine: 0.05,
            colluding: 0.02,
            careless: 0.28,
            careful_sensitivity: (0.82, 0.97),
            careful_specificity: (0.93, 0.995),
            careless_sensitivity: (0.55, 0.80),
            careless_specificity: (0.80, 0.95),
            max_unsure: 0.04,
            present_at_start: 0.4,
            arrivals_until: 0.5,
            pair_meets: 0.3,
        }
    }
}

/// `n` volunteers of `shape`, groups interleaved over the ids.
pub fn population(n: usize, shape: &CrowdShape, rng: &mut impl Rng) -> Vec<Volunteer> {
    let mut out: Vec<Volunteer> = Vec::with_capacity(n);
    let mut id = 0usize;
    while id < n {
        let x: f64 = rng.random();
        let shares = [
            (shape.random, Group::Random),
            (shape.always_genuine, Group::AlwaysGenuine),
            // A draw seats a whole pair.
            (shape.colluding / 2.0, Group::Colluding),
            (shape.careless, Group::Careless),
        ];
        let mut cut = 0.0;
        let mut group = Group::Careful;
        for (share, g) in shares {
            cut += share;
            if x < cut {
                group = g;
                break;
            }
        }
        if group == Group::Colluding && id + 1 >= n {
            group = Group::Careful;
        }
        let (sens, spec) = match group {
            Group::Careful => (shape.careful_sensitivity, shape.careful_specificity),
            _ => (shape.careless_sensitivity, shape.careless_specificity),
        };
        let mut volunteer = Volunteer {
            group,
            sensitivity: rng.random_range(sens.0..sens.1),
            specificity: rng.random_range(spec.0..spec.1),
            unsure: rng.random_range(0.0..shape.max_unsure.max(1e-9)),
            arrival: arrival(shape, rng),
            activity: 1.0 / rng.random_range(0.25..=1.0f64),
            partner: None,
            pair_key: rng.random(),
        };
        if group == Group::Colluding {
            // Partners join together and work at the same pace.
            volunteer.partner = Some(id as u32 + 1);
            out.push(volunteer);
            volunteer.partner = Some(id as u32);
            out.push(volunteer);
            id += 2;
        } else {
            out.push(volunteer);
            id += 1;
        }
    }
    out
}

fn arrival(shape: &CrowdShape, rng: &mut impl Rng) -> f64 {
    if rng.random_bool(shape.present_at_start.clamp(0.0, 1.0)) {
        0.0
    } else {
        rng.random_range(0.0..shape.arrivals_until.max(1e-9))
    }
}

/// Who is there to claim work: arrivals in order, weighted draws, removals.
#[derive(Debug, Clone)]
pub struct Roster {
    /// Fenwick tree of the current weights.
    tree: Vec<f64>,
    weight: Vec<f64>,
    activity: Vec<f64>,
    /// Volunteer ids by arrival, and how many have arrived.
    by_arrival: Vec<(f64, u32)>,
    arrived: usize,
    removed: Vec<bool>,
    total: f64,
}

impl Roster {
    /// Nobody present yet.
    pub fn new(crowd: &[Volunteer]) -> Self {
        let mut by_arrival: Vec<(f64, u32)> = crowd
            .iter()
            .enumerate()
            .map(|(i, v)| (v.arrival, i as u32))
            .collect();
        by_arrival.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Roster {
            tree: vec![0.0; crowd.len() + 1],
            weight: vec![0.0; crowd.len()],
            activity: crowd.iter().map(|v| v.activity).collect(),
            by_arrival,
            arrived: 0,
            removed: vec![false; crowd.len()],
            total: 0.0,
        }
    }

    /// Lets in everyone who arrives by `time` (a share of the run).
    pub fn advance(&mut self, time: f64) {
        while let Some(&(at, id)) = self.by_arrival.get(self.arrived) {
            if at > time {
                break;
            }
            self.arrived += 1;
            if !self.removed[id as usize] {
                self.set(id, self.activity[id as usize]);
            }
        }
    }

    /// Takes a volunteer out for good (stopped from counting).
    pub fn remove(&mut self, id: u32) {
        self.removed[id as usize] = true;
        self.set(id, 0.0);
    }

    /// Whether `id` is present and not taken out.
    pub fn present(&self, id: u32) -> bool {
        self.weight[id as usize] > 0.0
    }

    /// Volunteers present.
    pub fn len(&self) -> usize {
        self.weight.iter().filter(|w| **w > 0.0).count()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.total <= 0.0
    }

    /// A present volunteer, drawn in proportion to activity.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<u32> {
        if self.total <= 0.0 {
            return None;
        }
        let mut target = rng.random::<f64>() * self.total;
        let (mut pos, mut step) = (0usize, self.tree.len().next_power_of_two());
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] <= target {
                target -= self.tree[next];
                pos = next;
            }
            step /= 2;
        }
        // Rounding can land past the last present volunteer: take the nearest.
        let id = pos.min(self.weight.len() - 1);
        (id..self.weight.len())
            .chain((0..id).rev())
            .find(|i| self.weight[*i] > 0.0)
            .map(|i| i as u32)
    }

    fn set(&mut self, id: u32, weight: f64) {
        let delta = weight - self.weight[id as usize];
        self.weight[id as usize] = weight;
        self.total += delta;
        let mut i = id as usize + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_crowd_has_the_shape_asked_for_and_careful_volunteers_miss_more_fakes_than_they_accuse() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let crowd = population(20_000, &CrowdShape::default(), &mut rng);
        let share = |g: Group| crowd.iter().filter(|v| v.group == g).count() as f64 / 20_000.0;
        assert!((share(Group::Random) - 0.10).abs() < 0.01);
        assert!((share(Group::AlwaysGenuine) - 0.05).abs() < 0.01);
        assert!((share(Group::Colluding) - 0.02).abs() < 0.005);
        for (i, v) in crowd.iter().enumerate() {
            if let Some(p) = v.partner {
                assert_eq!(crowd[p as usize].partner, Some(i as u32));
            }
        }
        let careful: Vec<&Volunteer> = crowd.iter().filter(|v| v.group == Group::Careful).collect();
        let mean = |f: fn(&Volunteer) -> f64| {
            careful.iter().map(|v| f(v)).sum::<f64>() / careful.len() as f64
        };
        assert!(mean(|v| v.specificity) > mean(|v| v.sensitivity) + 0.05);
        let present = crowd.iter().filter(|v| v.arrival == 0.0).count() as f64 / 20_000.0;
        assert!((present - 0.4).abs() < 0.02, "{present}");
    }

    #[test]
    fn colluding_partners_always_agree_and_honest_answers_follow_their_rates() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let crowd = population(2_000, &CrowdShape::default(), &mut rng);
        let a = crowd
            .iter()
            .position(|v| v.group == Group::Colluding)
            .unwrap();
        let b = crowd[a].partner.unwrap() as usize;
        for listing in 0..200 {
            assert_eq!(
                crowd[a].answer(listing, true, &mut rng),
                crowd[b].answer(listing, true, &mut rng)
            );
        }
        let v = Volunteer {
            group: Group::Careless,
            sensitivity: 0.6,
            specificity: 0.9,
            unsure: 0.0,
            arrival: 0.0,
            activity: 1.0,
            partner: None,
            pair_key: 0,
        };
        let caught = (0..20_000)
            .filter(|i| v.answer(*i, true, &mut rng) == Verdict::Counterfeit)
            .count() as f64;
        assert!((caught / 20_000.0 - 0.6).abs() < 0.015);
    }

    #[test]
    fn the_roster_draws_only_arrived_volunteers_in_proportion_to_activity() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut crowd = population(4, &CrowdShape::default(), &mut rng);
        for (i, v) in crowd.iter_mut().enumerate() {
            v.arrival = i as f64 / 4.0;
            v.activity = 1.0 + i as f64;
        }
        let mut roster = Roster::new(&crowd);
        assert_eq!(roster.draw(&mut rng), None);
        roster.advance(0.3);
        assert_eq!(roster.len(), 2);
        let draws: Vec<u32> = (0..3_000).filter_map(|_| roster.draw(&mut rng)).collect();
        let ones = draws.iter().filter(|d| **d == 1).count() as f64 / 3_000.0;
        assert!((ones - 2.0 / 3.0).abs() < 0.04, "{ones}");
        roster.remove(1);
        roster.advance(1.0);
        assert!(!roster.present(1) && roster.present(3));
        assert!((0..500).all(|_| roster.draw(&mut rng) != Some(1)));
    }
}

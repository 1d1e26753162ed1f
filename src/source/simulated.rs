//! Simulated sensors: deterministic waveforms for demos and tests (the embedded default).
//!
//! `sine`, `ramp`, `random_walk`, `square`, `constant` and `script` (a list of values, `nan`/`inf` allowed, with
//! `silent` indexes where the sensor sends nothing). `nan_probability` injects NaN; `decimals` rounds like an ADC.
//! Time-based waveforms (sine, square) are functions of the wall clock, so a restart continues the curve.

use super::runner::{Policy, Poll, Sample, Source};
use super::SourceError;
use crate::config::{SensorConfig, SimulatedSource, Waveform};
use crate::model::{SensorId, Timestamp};

/// A simulated signal generator.
pub struct Simulated {
    cfg: SimulatedSource,
    rng: fastrand::Rng,
    n: u64,
    level: f64,
}

impl Simulated {
    /// Build from a validated source config.
    pub fn new(cfg: &SimulatedSource) -> Self {
        Simulated {
            rng: fastrand::Rng::with_seed(cfg.seed.unwrap_or(1)),
            n: 0,
            level: cfg.offset.unwrap_or(0.0),
            cfg: cfg.clone(),
        }
    }

    /// The next sample at `now`; `None` means silence.
    pub fn sample(&mut self, now: Timestamp) -> Option<f64> {
        let c = &self.cfg;
        let n = self.n;
        self.n += 1;
        let period_ms = c
            .period
            .map(|p| p.0.as_millis() as f64)
            .unwrap_or(60_000.0)
            .max(1.0);
        let phase = (now.0 as f64 % period_ms) / period_ms;
        let mut v = match self.cfg.waveform {
            Waveform::Sine => {
                c.offset.unwrap_or(0.0)
                    + c.amplitude.unwrap_or(1.0) * (std::f64::consts::TAU * phase).sin()
            }
            Waveform::Square => {
                if phase < 0.5 {
                    c.min.unwrap_or(0.0)
                } else {
                    c.max.unwrap_or(1.0)
                }
            }
            Waveform::Constant => c.offset.unwrap_or(0.0),
            Waveform::Ramp => {
                let mut v = c.offset.unwrap_or(0.0) + n as f64 * c.step.unwrap_or(1.0);
                if let (Some(lo), Some(hi)) = (c.min, c.max) {
                    if hi > lo {
                        v = lo + (v - lo).rem_euclid(hi - lo);
                    }
                }
                v
            }
            Waveform::RandomWalk => {
                if n > 0 {
                    self.level += c.step.unwrap_or(1.0) * (self.rng.f64() * 2.0 - 1.0);
                }
                if let Some(lo) = c.min {
                    self.level = self.level.max(lo);
                }
                if let Some(hi) = c.max {
                    self.level = self.level.min(hi);
                }
                self.level
            }
            Waveform::Script => {
                let vals = c.values.as_deref().unwrap_or(&[]);
                if vals.is_empty() {
                    return None;
                }
                let repeat = c.repeat.unwrap_or(true);
                if !repeat && n as usize >= vals.len() {
                    return None;
                }
                let i = (n as usize) % vals.len();
                if c.silent.as_ref().is_some_and(|s| s.contains(&i)) {
                    return None;
                }
                vals[i]
            }
        };
        if let Some(noise) = c.noise {
            v += noise * (self.rng.f64() * 2.0 - 1.0);
        }
        if let Some(p) = c.nan_probability {
            if self.rng.f64() < p {
                return Some(f64::NAN);
            }
        }
        if let Some(d) = c.decimals {
            if v.is_finite() {
                let f = 10f64.powi(d.min(12) as i32);
                v = (v * f).round() / f;
            }
        }
        Some(v)
    }
}

/// The simulated sensors that share an interval, as one [`Source`]: one timer and one batch per tick for all of
/// them (2,000 sensors at 1 Hz are one wake-up a second, not 2,000), stamped alike.
pub struct SimulatedGroup {
    interval: std::time::Duration,
    name: String,
    sensors: Vec<(SensorId, Simulated)>,
}

impl SimulatedGroup {
    /// The sensors (all on `interval`) with their sources.
    pub fn new(interval: std::time::Duration, sensors: &[(SensorConfig, SimulatedSource)]) -> Self {
        SimulatedGroup {
            interval,
            name: format!("simulated every {}", humantime::format_duration(interval)),
            sensors: sensors
                .iter()
                .map(|(s, src)| (SensorId::new(&s.id), Simulated::new(src)))
                .collect(),
        }
    }
}

impl Source for SimulatedGroup {
    fn name(&self) -> &str {
        &self.name
    }
    fn policy(&self) -> Policy {
        Policy {
            kind: "Simulated",
            timeout: std::time::Duration::from_secs(10),
            retries: 0,
            reconnect: (
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(1),
            ),
            timeout_reconnects: false,
            fresh_after_reconnect: false,
            timeout_hint: "",
        }
    }
    fn polls(&self) -> Vec<Poll> {
        vec![Poll {
            interval: self.interval,
            unit: None,
            what: "waveforms".into(),
            sensors: self.sensors.iter().map(|(id, _)| *id).collect(),
        }]
    }
    async fn connect(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    async fn read(&mut self, _poll: usize) -> Result<Vec<Sample>, SourceError> {
        let now = Timestamp::now();
        Ok(self
            .sensors
            .iter_mut()
            .filter_map(|(id, sim)| {
                sim.sample(now).map(|v| Sample {
                    sensor: *id,
                    value: Ok(v),
                    at: Some(now),
                    exact: None,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(kind: &str) -> SimulatedSource {
        let waveform = match kind {
            "random_walk" => Waveform::RandomWalk,
            "script" => Waveform::Script,
            "square" => Waveform::Square,
            _ => Waveform::Sine,
        };
        SimulatedSource {
            waveform,
            ..Default::default()
        }
    }

    #[test]
    fn seeded_random_walk_is_deterministic_and_bounded() {
        let mut c = src("random_walk");
        c.seed = Some(7);
        c.min = Some(0.0);
        c.max = Some(10.0);
        c.offset = Some(5.0);
        let a: Vec<_> = {
            let mut s = Simulated::new(&c);
            (0..100)
                .map(|i| s.sample(Timestamp(i)).unwrap_or(f64::NAN))
                .collect()
        };
        let b: Vec<_> = {
            let mut s = Simulated::new(&c);
            (0..100)
                .map(|i| s.sample(Timestamp(i)).unwrap_or(f64::NAN))
                .collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.0..=10.0).contains(v)));
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn script_with_silence_and_nan() {
        let mut c = src("script");
        c.values = Some(vec![1.0, f64::NAN, 3.0]);
        c.silent = Some(vec![2]);
        c.repeat = Some(false);
        let mut s = Simulated::new(&c);
        assert_eq!(s.sample(Timestamp(0)), Some(1.0));
        assert!(s.sample(Timestamp(0)).is_some_and(f64::is_nan));
        assert_eq!(s.sample(Timestamp(0)), None);
        assert_eq!(s.sample(Timestamp(0)), None);
    }

    #[test]
    fn sine_and_square_follow_the_clock() {
        let mut c = src("sine");
        c.offset = Some(50.0);
        c.amplitude = Some(10.0);
        c.period = Some(crate::config::Dur(std::time::Duration::from_secs(4)));
        let mut s = Simulated::new(&c);
        assert!((s.sample(Timestamp(1000)).unwrap_or(0.0) - 60.0).abs() < 1e-9);
        assert!((s.sample(Timestamp(3000)).unwrap_or(0.0) - 40.0).abs() < 1e-9);
        let mut q = src("square");
        q.period = Some(crate::config::Dur(std::time::Duration::from_secs(2)));
        q.min = Some(0.0);
        q.max = Some(5.0);
        let mut s = Simulated::new(&q);
        assert_eq!(s.sample(Timestamp(500)), Some(0.0));
        assert_eq!(s.sample(Timestamp(1500)), Some(5.0));
    }
}

//! The pool's threads kept awake through a whole forward pass.
//!
//! Each layer hands its threads one job. Through [`rayon::broadcast`] a thread that runs
//! out of work spins briefly, then sleeps, and the next layer must wake it: on this
//! project's 2-core virtual machine (AMD Zen 4) a thread idle for 20 µs or more took a
//! median 21 µs to start the next job (up to 50–90 µs), against 1 µs while it still spun.
//! A layer of ResNet-50 at batch 1 takes 0.05–0.3 ms, and its last tiles end up to a tile
//! apart on the two threads, so those waits add up over its 53 convolutions. [`run`]
//! instead runs a pass on one thread of the pool, the leader, while the others wait for
//! jobs spinning, and [`each_thread`] hands them each job directly. Int8 ResNet-50 there,
//! 30 passes each way alternating in one process (best): batch 1 12.04 against 12.47 ms,
//! 12.49 against 12.92 and 12.11 against 12.43 (medians 2–5% lower); batch 8 about 1%.
//! Caption decoding runs each call (a batch of captions) as a pass too: its words' panel
//! products (see `panel.rs`) then give each thread the same share of every weight matrix,
//! word after word, and beam 3 at batch 1 with int8 weights took 8–11% less time (best of
//! 50, alternating in one process, nine rounds in three runs).
//!
//! A waiting thread spins for [`SPIN`], then between looks runs any rayon work pending in
//! the pool ([`rayon::yield_now`]: a broadcast or a parallel iterator begun in the pass, or
//! by other callers) or yields its core, so that such work still ends and other programs
//! still run. One pass at a time has a team ([`PASS`]); a pass begun during it runs as
//! before, each job through [`rayon::broadcast`].

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::{Duration, Instant};

/// How long a waiting thread spins before it yields between looks.
const SPIN: Duration = Duration::from_micros(200);

/// A job for every member: `job(member, members)`.
type Job<'a> = &'a (dyn Fn(usize, usize) + Sync);

struct Team {
    members: usize,
    /// Bumped as each job is handed out.
    epoch: AtomicUsize,
    /// The current job: written by the leader only while no follower reads it (before the
    /// epoch is bumped, after every follower has finished the last one).
    job: UnsafeCell<Option<Job<'static>>>,
    /// Followers done with the current job.
    finished: AtomicUsize,
    /// The pass is over.
    done: AtomicBool,
    /// A follower's panic, for the leader to raise.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` is written and read under the protocol above (the epoch's release and
// acquire order the write before every read, and `finished` every read before the next
// write); everything else is atomic or locked.
unsafe impl Sync for Team {}

/// Held by the pass that has a team.
static PASS: Mutex<()> = Mutex::new(());

thread_local! {
    /// The team this thread leads, during [`run`].
    static LEADING: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

/// Waits until `ready()`: spinning for [`SPIN`], then running work pending in the pool (not
/// as the team's leader: it may be another pass) or yielding the core between looks.
fn wait(ready: impl Fn() -> bool) {
    let start = Instant::now();
    let (mut looks, mut spinning) = (0u32, true);
    while !ready() {
        if spinning {
            std::hint::spin_loop();
            looks = looks.wrapping_add(1);
            spinning = !looks.is_multiple_of(64) || start.elapsed() <= SPIN;
        } else {
            let leading = LEADING.replace(std::ptr::null());
            let ran = rayon::yield_now();
            LEADING.set(leading);
            if ran != Some(rayon::Yield::Executed) {
                std::thread::yield_now();
            }
        }
    }
}

/// Runs `pass` on a thread of the pool with the pool's other threads waiting, awake, for
/// the jobs [`each_thread`] hands out in it (see the module notes).
pub fn run<R: Send>(pass: impl FnOnce() -> R + Send) -> R {
    let members = rayon::current_num_threads().max(1);
    if members == 1 || !LEADING.get().is_null() {
        return pass();
    }
    let _one_team = match PASS.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return pass(),
    };
    let team = Team {
        members,
        epoch: AtomicUsize::new(0),
        job: UnsafeCell::new(None),
        finished: AtomicUsize::new(0),
        done: AtomicBool::new(false),
        panic: Mutex::new(None),
    };
    let pass = Mutex::new(Some(pass));
    let out = Mutex::new(None);
    rayon::broadcast(|ctx| {
        if ctx.index() == 0 {
            // Ends the pass for the followers even where it panics.
            struct Done<'a>(&'a Team);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    LEADING.set(std::ptr::null());
                    self.0.done.store(true, Ordering::Release);
                }
            }
            let _done = Done(&team);
            LEADING.set(&team);
            let pass = pass.lock().unwrap().take().expect("one leader");
            *out.lock().unwrap() = Some(pass());
        } else if ctx.index() < members {
            follow(&team, ctx.index());
        }
    });
    let out = out.into_inner().unwrap_or_else(|e| e.into_inner());
    out.expect("the leader ran the pass")
}

/// A follower: each job as it comes, until the pass is over.
fn follow(team: &Team, member: usize) {
    let mut seen = 0;
    loop {
        wait(|| team.epoch.load(Ordering::Acquire) != seen || team.done.load(Ordering::Acquire));
        let epoch = team.epoch.load(Ordering::Acquire);
        if epoch == seen {
            return; // done, and no job left
        }
        seen = epoch;
        // SAFETY: the epoch was bumped after the job was written, and the leader writes
        // the next only once this follower has counted itself finished.
        let job = unsafe { *team.job.get() }.expect("a job with each epoch");
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| job(member, team.members))) {
            team.panic.lock().unwrap().get_or_insert(p);
        }
        team.finished.fetch_add(1, Ordering::Release);
    }
}

/// Whether this thread leads a pass of [`run`]: jobs handed to [`each_thread`] go to its
/// waiting team.
pub fn in_pass() -> bool {
    !LEADING.get().is_null()
}

/// Runs `job(i, n)` once on each of `n` threads: in a pass of [`run`], on its team;
/// else through [`rayon::broadcast`].
pub fn each_thread(job: &(dyn Fn(usize, usize) + Sync)) {
    let leading = LEADING.get();
    if leading.is_null() {
        rayon::broadcast(|ctx| job(ctx.index(), ctx.num_threads()));
        return;
    }
    // SAFETY: set by `run` on this thread for as long as the team lives.
    let team = unsafe { &*leading };
    // SAFETY: no follower reads the job now (each finished the last); the lifetime is
    // erased only until every follower has finished this one, below, before returning.
    unsafe {
        *team.job.get() = Some(std::mem::transmute::<Job<'_>, Job<'static>>(job));
    }
    team.finished.store(0, Ordering::Relaxed);
    team.epoch.fetch_add(1, Ordering::Release);
    let mine = catch_unwind(AssertUnwindSafe(|| job(0, team.members)));
    let followers = team.members - 1;
    wait(|| team.finished.load(Ordering::Acquire) == followers);
    // SAFETY: every follower is done with it.
    unsafe { *team.job.get() = None };
    if let Err(p) = mine {
        resume_unwind(p);
    }
    if let Some(p) = team.panic.lock().unwrap().take() {
        resume_unwind(p);
    }
}

/// Runs `part(i)` for each `i` in `0..parts`, spread over the threads (of the team in a
/// pass of [`run`]) as they come free.
pub fn for_parts(parts: usize, part: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    each_thread(&|_, _| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= parts {
            break;
        }
        part(i);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a pass and outside one, on 1 to 4 threads: every job reaches every thread once,
    /// jobs follow one another in order, and a panic in any thread's share reaches the
    /// caller and leaves the pool usable.
    #[test]
    fn every_thread_runs_each_job_in_turn() {
        for threads in 1..=4 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for in_pass in [false, true] {
                let jobs = || {
                    let hits: Vec<AtomicUsize> =
                        (0..50 * threads).map(|_| AtomicUsize::new(0)).collect();
                    for j in 0..50 {
                        each_thread(&|i, n| {
                            assert_eq!(n, threads);
                            // The last job is wholly done before this one starts.
                            if j > 0 {
                                for t in 0..n {
                                    assert_eq!(hits[(j - 1) * n + t].load(Ordering::Relaxed), 1);
                                }
                            }
                            hits[j * n + i].fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1)
                };
                let all = pool.install(|| if in_pass { run(jobs) } else { jobs() });
                assert!(all, "{threads} threads, in a pass: {in_pass}");
                let sum = AtomicUsize::new(0);
                pool.install(|| {
                    run(|| {
                        for_parts(1000, |i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        })
                    })
                });
                assert_eq!(sum.into_inner(), 999 * 1000 / 2);
                for culprit in 0..threads {
                    let caught = catch_unwind(AssertUnwindSafe(|| {
                        pool.install(|| {
                            let pass =
                                || each_thread(&|i, _| assert_ne!(i, culprit, "a failing share"));
                            if in_pass {
                                run(pass)
                            } else {
                                pass()
                            }
                        })
                    }));
                    assert!(caught.is_err(), "thread {culprit} of {threads} panicked");
                }
            }
        }
    }

    /// Passes begun at once from outside the pool, and from inside it (in a parallel
    /// iterator, so that a pass's thread may be one the other needs), all end, with every
    /// job done once.
    #[test]
    fn passes_at_once_all_end() {
        use rayon::prelude::*;
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let pass = || {
                let hits = AtomicUsize::new(0);
                run(|| {
                    for _ in 0..20 {
                        each_thread(&|_, _| {
                            hits.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
                hits.into_inner()
            };
            std::thread::scope(|s| {
                let callers: Vec<_> = (0..3)
                    .map(|_| s.spawn(|| (0..30).map(|_| pool.install(pass)).sum::<usize>()))
                    .collect();
                let inside: usize = pool.install(|| (0..24).into_par_iter().map(|_| pass()).sum());
                assert_eq!(inside, 24 * 20 * 3);
                for c in callers {
                    assert_eq!(c.join().unwrap(), 30 * 20 * 3);
                }
            });
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("every pass ends");
    }

    /// Rayon's own parallel work begun by a pass (a broadcast, a parallel iterator) is run
    /// by the team's waiting threads too: it ends, on every thread.
    #[test]
    fn rayon_work_in_a_pass_ends() {
        use rayon::prelude::*;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (threads, sum) = pool.install(|| {
                run(|| {
                    each_thread(&|_, _| {});
                    let threads = rayon::broadcast(|ctx| ctx.index());
                    let sum: usize = (0..1000usize).into_par_iter().sum();
                    (threads, sum)
                })
            });
            done.send((threads, sum)).unwrap();
        });
        let (threads, sum) = finished
            .recv_timeout(Duration::from_secs(120))
            .expect("the pass ends");
        assert_eq!((threads, sum), (vec![0, 1, 2], 999 * 1000 / 2));
    }
}

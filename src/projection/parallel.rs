//! Runs the independent steps of building the projections on every core:
//! the sections of a snapshot decode, and the posting indexes after a
//! snapshot decode or a full replay.

use std::sync::Mutex;

/// One step of a build, run on whichever thread is free.
pub(super) type Job<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Runs `jobs` on up to as many threads as the machine has cores and
/// returns their results in job order. Each thread takes the next job when
/// it finishes one, so jobs listed longest first spread best. The calling
/// thread runs jobs too, and alone when no thread can be started. A job
/// that panics makes the call panic once the other threads stop. The panic
/// message reaches the caller only when the job ran on the calling thread,
/// and the panic hook prints it in every case.
pub(super) fn run_jobs<'a, T: Send>(jobs: Vec<Job<'a, T>>) -> Vec<T> {
    let count = jobs.len();
    let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get()).min(count);
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    let work = || loop {
        // A poisoned lock means another job panicked, and this call ends
        // with that panic anyway.
        let next = queue.lock().expect("no job panicked").next();
        let Some((index, job)) = next else {
            break;
        };
        let result = job();
        results.lock().expect("no job panicked")[index] = Some(result);
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let started = std::thread::Builder::new()
                .name("projection-build".into())
                .spawn_scoped(scope, work);
            if started.is_err() {
                break;
            }
        }
        work();
    });
    let results = results.into_inner().expect("no job panicked");
    results.into_iter().map(|result| result.expect("every job ran")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_job_order() {
        let jobs: Vec<Job<'_, usize>> = (0..20usize)
            .map(|index| {
                Box::new(move || {
                    // Later jobs finish first when threads share them.
                    std::thread::sleep(std::time::Duration::from_millis(20 - index as u64));
                    index * 10
                }) as Job<'_, usize>
            })
            .collect();
        let expected: Vec<usize> = (0..20).map(|index| index * 10).collect();
        assert_eq!(run_jobs(jobs), expected, "results in job order");
    }

    #[test]
    fn jobs_borrow_caller_data() {
        let words = ["alpha", "beta", "gamma"];
        let jobs: Vec<Job<'_, usize>> =
            words.iter().map(|word| Box::new(move || word.len()) as Job<'_, usize>).collect();
        assert_eq!(run_jobs(jobs), vec![5, 4, 5], "lengths of borrowed words");
        assert!(run_jobs::<usize>(Vec::new()).is_empty(), "no jobs, no results");
    }
}

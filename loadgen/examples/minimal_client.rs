//! The minimal client loadgen is measured against: one tokio current-thread
//! runtime, C connections, each writes S bytes and `read_exact`s them back
//! in a loop, counting completions — no verification, no histogram, nothing
//! else. `bench overhead` (`scripts/bench.sh overhead`) runs it and loadgen in turn.
//!
//! ```text
//! cargo run --release -p loadgen --example minimal_client -- ADDR CONNECTIONS SIZE DURATION_SECS WARMUP_SECS
//! ```
//! Prints one JSON line: requests_per_sec and the client's CPU seconds over
//! the measured window.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 5, "usage: minimal_client ADDR CONNECTIONS SIZE DURATION_SECS WARMUP_SECS");
    let addr: std::net::SocketAddr = args[0].parse()?;
    let connections: usize = args[1].parse()?;
    let size: usize = args[2].parse()?;
    let duration = Duration::from_secs_f64(args[3].parse()?);
    let warmup = Duration::from_secs_f64(args[4].parse()?);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let done = Rc::new(Cell::new(0u64));
        let mut streams = Vec::with_capacity(connections);
        for _ in 0..connections {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            streams.push(stream);
        }
        for mut stream in streams {
            let done = Rc::clone(&done);
            tokio::task::spawn_local(async move {
                let out = vec![0x42u8; size];
                let mut back = vec![0u8; size];
                loop {
                    if stream.write_all(&out).await.is_err() || stream.read_exact(&mut back).await.is_err() {
                        return;
                    }
                    done.set(done.get() + 1);
                }
            });
        }
        tokio::time::sleep(warmup).await;
        let (start, cpu0, done0) = (Instant::now(), loadgen::cpu::ProcessCpu::now(), done.get());
        tokio::time::sleep(duration).await;
        let (wall, cpu, completed) =
            (start.elapsed(), loadgen::cpu::ProcessCpu::now().since(cpu0), done.get() - done0);
        let cpu_secs = (cpu.user + cpu.sys).as_secs_f64();
        println!(
            "{{\"requests_per_sec\": {:.1}, \"completed\": {completed}, \"duration_secs\": {:.4}, \"cpu_secs\": {cpu_secs:.4}, \"user_secs\": {:.4}}}",
            completed as f64 / wall.as_secs_f64(),
            wall.as_secs_f64(),
            cpu.user.as_secs_f64()
        );
        anyhow::Ok(())
    })
}

//! Modules' thread-local blocks through the executor interface, in process
//! and in a `solder-executor` over pipes (with and without shared memory):
//! a fixed block sits at the thread-pointer offset the executor reports, in
//! the process that runs the code, initialized from the template; closing
//! it is acknowledged, and an unknown id is an error. Needs
//! `target/<profile>/solder-executor` (built by `cargo test --workspace`).

mod support;

use solder_executor::abi::CallingConvention;
use solder_executor::protocol::PlacementCode;
use solder_linker::executors::{
    Executor, ExecutorOutput, InProcess, Outcome, Remote, RemoteConfig, TlsTemplate,
};
use solder_linker::graph::Protection;
use solder_linker::{Recovery, Transport};
use support::remote::executor_binary;

fn rerun(test: &str) -> String {
    format!("rerun: cargo test --workspace --test thread_locals -- {test} --exact")
}

/// Every executor this test tries, by name.
fn executors() -> Vec<(&'static str, Box<dyn Executor>)> {
    let remote = |shared_memory| {
        Remote::connect(RemoteConfig {
            transport: Transport::Pipe {
                program: Some(executor_binary()),
            },
            shared_memory,
            recovery: Recovery::None,
            output: ExecutorOutput::Local,
        })
        .unwrap()
    };
    vec![
        (
            "in process",
            Box::new(InProcess::new().unwrap()) as Box<dyn Executor>,
        ),
        ("pipe", Box::new(remote(false))),
        ("pipe, shared memory", Box::new(remote(true))),
    ]
}

/// `mov rax, qword ptr fs:[offset]; ret`: reads 8 bytes at `offset` from
/// the thread pointer of the thread that runs it.
fn read_at_tp_offset(offset: i64) -> Vec<u8> {
    let mut code = vec![0x64, 0x48, 0x8b, 0x04, 0x25];
    code.extend_from_slice(&i32::try_from(offset).unwrap().to_le_bytes());
    code.push(0xc3);
    code
}

#[test]
fn a_fixed_block_is_at_its_reported_offset_where_the_code_runs() {
    let test = "a_fixed_block_is_at_its_reported_offset_where_the_code_runs";
    let init = *b"0123456789abcdef";
    let template = TlsTemplate {
        init: &init,
        zero_size: 48,
        align: 32,
    };
    for (name, mut executor) in executors() {
        let block = executor.load_thread_locals(&template, true).unwrap();
        assert!(block.module > 0, "{name}: a module id\n{}", rerun(test));
        assert!(
            block.tp_offset < 0 && block.tp_offset % 32 == 0,
            "{name}: a fixed, aligned block below the thread pointer: {block:?}\n{}",
            rerun(test)
        );
        let page = executor.page_size();
        let base = executor.reserve(page, PlacementCode::Any, 0).unwrap();
        for (i, expected) in [(0, &init[..8]), (8, &init[8..])] {
            executor
                .write(base, &read_at_tp_offset(block.tp_offset + i))
                .unwrap();
            executor.protect(base, page, Protection::Code).unwrap();
            let outcome = executor
                .call(base, [0; 6], false, CallingConvention::SysV, None)
                .unwrap();
            let Outcome::Returned(value) = outcome else {
                panic!(
                    "{name}: the read returned nothing: {outcome:?}\n{}",
                    rerun(test)
                );
            };
            assert_eq!(
                &value.to_le_bytes()[..],
                expected,
                "{name}: the template's bytes {i}.. at the reported offset\n{}",
                rerun(test)
            );
        }
        executor.drop_thread_locals(block.id).unwrap();
        executor.flush().unwrap();
        let again = executor
            .drop_thread_locals(block.id)
            .and_then(|()| executor.flush());
        assert!(
            again.is_err(),
            "{name}: an unknown id is refused\n{}",
            rerun(test)
        );
    }
}

#[test]
fn a_template_the_loader_cannot_place_is_an_error() {
    let test = "a_template_the_loader_cannot_place_is_an_error";
    // Far more than static TLS holds without the tunable that enlarges it.
    let zero = TlsTemplate {
        init: &[],
        zero_size: 1 << 30,
        align: 16,
    };
    let odd = TlsTemplate {
        init: &[1],
        zero_size: 0,
        align: 24,
    };
    for (name, mut executor) in executors() {
        let error = executor
            .load_thread_locals(&zero, true)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("static TLS"),
            "{name}: the loader's refusal: {error}\n{}",
            rerun(test)
        );
        let error = executor
            .load_thread_locals(&odd, true)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("power of two"),
            "{name}: {error}\n{}",
            rerun(test)
        );
    }
}

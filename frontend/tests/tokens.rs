//! Tokens and client ids come from the browser's cryptographic generator.

#![cfg(target_arch = "wasm32")]

use std::collections::HashSet;

use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// With `Math.random` made constant, tokens still differ: they do not come from it. Each is
/// a valid 26-digit client token.
#[wasm_bindgen_test]
fn tokens_do_not_come_from_math_random() {
    let math = js_sys::Reflect::get(&js_sys::global(), &"Math".into()).expect("Math");
    let original = js_sys::Reflect::get(&math, &"random".into()).expect("Math.random");
    let constant = js_sys::Function::new_no_args("return 0.5;");
    js_sys::Reflect::set(&math, &"random".into(), &constant).expect("replace Math.random");
    let tokens: Vec<String> = (0..20).map(|_| frontend::page::random_token()).collect();
    let ids: Vec<String> = (0..20).map(|_| frontend::outbox::new_client_id()).collect();
    js_sys::Reflect::set(&math, &"random".into(), &original).expect("restore Math.random");
    assert_ne!(original, JsValue::UNDEFINED);

    let distinct: HashSet<&String> = tokens.iter().chain(&ids).collect();
    assert_eq!(distinct.len(), 40, "every token is new");
    for token in &tokens {
        assert_eq!(token.len(), 26);
        assert_eq!(protocol::rules::check_client_token(token).as_ref(), Some(token));
    }
}

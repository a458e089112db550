//! A real shared library that is not a sec-audit plugin: it exports a C
//! function but no plugin root module.

#[no_mangle]
pub extern "C" fn not_a_plugin_answer() -> u32 {
    42
}

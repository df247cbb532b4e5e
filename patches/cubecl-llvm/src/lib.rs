//! The part of cubecl-llvm's API that cubecl-cuda's runtime names, without LLVM.
//!
//! cubecl-cuda always compiles two kernel compilers and picks one at run time: CUDA C++ through
//! NVRTC, or pliron/LLVM to PTX. Kiln selects NVRTC (cubecl-cuda's `cpp` feature), so the LLVM
//! compiler is never run; here it exists only as a type that refuses to compile, which keeps
//! `llvm-sys` and its downloaded LLVM bundle out of the build.

use cubecl_core::ir::nvidia::SmArch;
use cubecl_environment::backtrace::BackTrace;
use cubecl_runtime::compiler::CompilationError;
use cubecl_runtime::kernel::{BufferIOAttr, KernelDefinition};

/// Why every LLVM compilation fails in this build.
pub const NOT_BUILT: &str = "this build of Kiln has no LLVM kernel compiler: CUDA kernels are \
     compiled by NVRTC (cubecl-cuda's `cpp` backend)";

pub mod nvptx {
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version (8.7 is `87`). Only the LLVM compiler emits PTX of a chosen
        /// version; NVRTC writes its own toolkit's, so this build never has one to choose.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(u32);

        impl PtxVersion {
            /// The version the LLVM compiler would emit for a driver: none here, as no LLVM
            /// compiler runs. The runtime reads `None` as "leave it to the compiler".
            pub fn for_driver(_driver: i32) -> Option<Self> {
                None
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }
    }
}

pub mod shared {
    pub mod lowered_features {
        /// The GPU targets the LLVM compiler lowers to.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            Nvptx,
        }

        /// Narrows the device's advertised features to what the LLVM compiler lowers. The
        /// runtime calls it only when the LLVM compiler is selected, which this build never
        /// does (`CudaBackend::default()` is `Cpp`), so there is nothing to narrow.
        pub fn restrict_features<Properties>(_properties: &mut Properties, _target: GpuTarget) {}
    }
}

/// The LLVM compiler's targets; the CUDA runtime names only this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlvmTarget {
    Nvptx,
}

/// Options the CUDA runtime fills in for the LLVM compiler.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// An AMD architecture; never set by the CUDA runtime.
    pub arch: Option<String>,
    pub sm_arch: Option<SmArch>,
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    pub grid_constants: bool,
}

/// PTX the LLVM compiler would have produced.
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX.
    pub ptx: Vec<core::ffi::c_char>,
    pub ir: String,
    pub shared_memory_size: usize,
    pub io: Vec<BufferIOAttr>,
}

/// What a compilation yields; never produced in this build.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    NvptxCode(NvptxModule),
}

/// The LLVM kernel compiler, which in this build refuses every kernel.
#[derive(Clone, Debug)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

impl PlironCompiler {
    pub fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &PlironOptions,
    ) -> Result<PlironArtifact, CompilationError> {
        Err(CompilationError::Generic {
            reason: NOT_BUILT.to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    pub fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}

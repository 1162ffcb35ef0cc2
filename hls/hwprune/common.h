// hwprune HLS kernel library: shared types and helpers.
// Every kernel is a function template parameterised by a CONFIG struct that the generator
// writes into parameters.h; kernels never read global state.
#ifndef HWP_COMMON_H
#define HWP_COMMON_H

#include "ap_fixed.h"
#include "ap_int.h"
#include "hls_stream.h"

namespace hwp {

// One word of a stream: the innermost physical axis of a tensor (e.g. all channels of a pixel).
template <class T, int N>
struct vec {
    T data[N];
    T &operator[](int i) { return data[i]; }
    const T &operator[](int i) const { return data[i]; }
};

// Storage type of constant ROMs (weights, tables). Synthesis gets exact-width ap_int words;
// host builds (csim) get native integers because g++ needs minutes to constant-initialise
// large arrays of ap_int/ap_fixed class objects and milliseconds for plain integers.
template <int W, bool S, int C = (W <= 8 ? 8 : W <= 16 ? 16 : W <= 32 ? 32 : 64)>
struct host_word;
template <int W> struct host_word<W, true, 8> { typedef signed char type; };
template <int W> struct host_word<W, true, 16> { typedef short type; };
template <int W> struct host_word<W, true, 32> { typedef int type; };
template <int W> struct host_word<W, true, 64> { typedef long long type; };
template <int W> struct host_word<W, false, 8> { typedef unsigned char type; };
template <int W> struct host_word<W, false, 16> { typedef unsigned short type; };
template <int W> struct host_word<W, false, 32> { typedef unsigned int type; };
template <int W> struct host_word<W, false, 64> { typedef unsigned long long type; };

#ifdef __SYNTHESIS__
template <int W, bool S> struct rom_word { typedef ap_int<W> type; };
template <int W> struct rom_word<W, false> { typedef ap_uint<W> type; };
#else
template <int W, bool S> struct rom_word { typedef typename host_word<W, S>::type type; };
#endif

// Reinterpret a raw ROM word as fixed-point type T: wires in hardware, exact on the host.
template <class T, class R>
inline T from_raw(R r) {
#pragma HLS INLINE
    T v;
    v.range(T::width - 1, 0) = r;
    return v;
}

// `T v = x;` for a fixed-point x, also where the Xilinx headers would abort: assigning a value
// whose lsb lies more than its width below T's lsb to a rounding T reads a bit past the
// source's MSB (an assertion in ap_private::get_bit). The source is then sign-extended first
// (exact), which changes no value — and no hardware, the extension is wires.
template <class T, class S, int PAD = (-(T::width - T::iwidth) - S::iwidth > 0 ? -(T::width - T::iwidth) - S::iwidth : 0)>
struct cast_impl {
    static T run(const S &x) {
#pragma HLS INLINE
        ap_fixed<S::width + PAD + 1, S::iwidth + PAD + 1> w = x;
        T v = w;
        return v;
    }
};
template <class T, class S>
struct cast_impl<T, S, 0> {
    static T run(const S &x) {
#pragma HLS INLINE
        T v = x;
        return v;
    }
};
template <class T, class S>
inline T cast(const S &x) {
#pragma HLS INLINE
    return cast_impl<T, S>::run(x);
}

// A weight x activation product, bound to the resource the layer's configuration chose
// (CFG::mult_impl: 0 = the tool decides, 1 = DSP slices, 2 = fabric LUTs). R (the layer's
// accumulator type) holds every product exactly, so the binding never changes a bit.
template <int IMPL> struct mul_bind;
template <> struct mul_bind<0> {
    template <class R, class A, class B> static R run(const A &a, const B &b) {
#pragma HLS INLINE
        R p = a * b;
        return p;
    }
};
template <> struct mul_bind<1> {
    template <class R, class A, class B> static R run(const A &a, const B &b) {
#pragma HLS INLINE
        R p = a * b;
#pragma HLS BIND_OP variable = p op = mul impl = dsp
        return p;
    }
};
template <> struct mul_bind<2> {
    template <class R, class A, class B> static R run(const A &a, const B &b) {
#pragma HLS INLINE
        R p = a * b;
#pragma HLS BIND_OP variable = p op = mul impl = fabric
        return p;
    }
};
template <int IMPL, class R, class A, class B>
inline R mul(const A &a, const B &b) {
#pragma HLS INLINE
    return mul_bind<IMPL>::template run<R>(a, b);
}

// Where a layer's weight banks are stored (CFG::rom_impl, hwprune's rom_impl): 0 = the tool
// decides by size, 1 = block RAM (BIND_STORAGE impl=bram). A pragma cannot depend on a template
// constant, so the kernels pick one of two overloads by this tag.
template <int IMPL> struct rom_impl_tag {};
// The output stage of a weight engine (CFG::output_stage): 0 = every output rounded and
// saturated at once, 1 = time-shared over the next word's reuse cycles (io_stream).
template <int STAGE> struct output_stage_tag {};

// The raw two's-complement mantissa of a fixed-point value (testbench output).
template <class T>
inline long long to_raw(const T &v) {
    ap_fixed<T::width + 1, T::iwidth + 1> wide = v;  // exact for signed and unsigned T
    ap_int<T::width + 1> bits;
    bits.range(T::width, 0) = wide.range(T::width, 0);
    return bits.to_int64();
}

// The raw mantissa of a fixed-point value as a signed integer one bit wider (exact also for
// unsigned T and beyond 64 bits).
template <class T>
inline ap_int<T::width + 1> raw_bits(const T &v) {
#pragma HLS INLINE
    ap_fixed<T::width + 1, T::iwidth + 1> wide = v;
    ap_int<T::width + 1> bits;
    bits.range(T::width, 0) = wide.range(T::width, 0);
    return bits;
}

// floor(r * 2^-D) for the raw bits r of a value the caller has checked lies inside a table's
// range, so that the result is a small table index (D < 0 shifts left).
template <int D, int W>
inline long long shift_floor(const ap_int<W> &r) {
#pragma HLS INLINE
    if (D >= 0) {
        ap_int<W> q = r >> (D < W ? D : W - 1);  // arithmetic: floor; past the width only the sign is left
        return q.to_int64();
    }
    return r.to_int64() << (D < 0 ? -D : 0);
}

// Raw mantissa of a value assigned from a raw integer of the same type (testbench input).
template <class T>
inline T from_int64(long long r) {
    T v;
    v.range(T::width - 1, 0) = r;
    return v;
}

}  // namespace hwp

// ---------------------------------------------------------------- loop counters
// A separate host build (-DHWP_COUNT, see hwprune.backend.csim.count_loops) counts what each
// kernel's loops execute, so the analytical estimate can be checked against it: per layer,
// "cycles" (each trip of the loop that sets a kernel's schedule adds its II), stream words read
// and written, and calls. Every CONFIG names its layer with HWP_LAYER_NAME. In synthesis and in
// the normal host build the macros expand to nothing.
#if defined(HWP_COUNT) && !defined(__SYNTHESIS__)
#include <cstdio>
#include <map>
#include <string>

namespace hwp {

struct loop_counts {
    long long cycles, reads, writes, calls;
};

inline std::map<std::string, loop_counts> &count_registry() {
    static std::map<std::string, loop_counts> m;
    return m;
}

// One slot per layer, looked up once per kernel instance (std::map references stay valid).
template <class CFG>
inline loop_counts &counts() {
    static loop_counts &c = count_registry()[CFG::name()];
    return c;
}

// Layer names are sanitised C identifiers: they need no JSON escaping.
inline bool write_counts(const char *path) {
    FILE *f = std::fopen(path, "w");
    if (!f) return false;
    std::fprintf(f, "{");
    const char *sep = "";
    for (std::map<std::string, loop_counts>::const_iterator it = count_registry().begin(); it != count_registry().end(); ++it) {
        std::fprintf(f, "%s\n  \"%s\": {\"cycles\": %lld, \"reads\": %lld, \"writes\": %lld, \"calls\": %lld}", sep,
                     it->first.c_str(), it->second.cycles, it->second.reads, it->second.writes, it->second.calls);
        sep = ",";
    }
    std::fprintf(f, "\n}\n");
    return std::fclose(f) == 0;
}

}  // namespace hwp

#define HWP_LAYER_NAME(n) \
    static const char *name() { return n; }
#define HWP_COUNT_CYCLES(CFG, n) (::hwp::counts<CFG>().cycles += (n))
#define HWP_COUNT_READ(CFG) (::hwp::counts<CFG>().reads += 1)
#define HWP_COUNT_WRITE(CFG) (::hwp::counts<CFG>().writes += 1)
#define HWP_COUNT_CALL(CFG) (::hwp::counts<CFG>().calls += 1)
#else
#define HWP_LAYER_NAME(n)
#define HWP_COUNT_CYCLES(CFG, n)
#define HWP_COUNT_READ(CFG)
#define HWP_COUNT_WRITE(CFG)
#define HWP_COUNT_CALL(CFG)
#endif

#endif

// Parametric primitives whose yosys synth_xilinx cost calibrates sim/resources.py
// (hwprune.sim.calibrate). Every module is the primitive alone: combinational ones have no
// register, so their FF count is zero and their LUT count is the primitive's.

// a x b multiplier, signed or unsigned operands (SA/SB = 1: signed).
module hwp_cal_mul #(parameter A = 8, B = 8, SA = 1, SB = 1) (
    input [A-1:0] a, input [B-1:0] b, output [A+B-1:0] p);
    wire signed [A:0] ax = SA ? {a[A-1], a} : {1'b0, a};
    wire signed [B:0] bx = SB ? {b[B-1], b} : {1'b0, b};
    wire signed [A+B+1:0] full = ax * bx;
    assign p = full[A+B-1:0];
endmodule

// x (A bits, signed) times the constant C (an A+B-bit product).
module hwp_cal_cmul #(parameter A = 8, B = 8, C = 37) (
    input signed [A-1:0] a, output signed [A+B-1:0] p);
    localparam signed [B-1:0] c = C;
    assign p = a * c;
endmodule

// N-bit adder (two's complement, N-bit result).
module hwp_cal_add #(parameter N = 16) (input [N-1:0] a, input [N-1:0] b, output [N-1:0] s);
    assign s = a + b;
endmodule

// N-bit accumulator: acc <= clear ? x : acc + x.
module hwp_cal_acc #(parameter N = 16) (input clk, input clear, input [N-1:0] x, output reg [N-1:0] acc);
    always @(posedge clk) acc <= clear ? x : acc + x;
endmodule

// N:1 multiplexer of W-bit words.
module hwp_cal_mux #(parameter N = 4, W = 8, S = (N > 1 ? $clog2(N) : 1)) (
    input [N*W-1:0] d, input [S-1:0] sel, output [W-1:0] y);
    assign y = d[sel*W +: W];
endmodule

// D x W ROM with pseudo-random contents, synchronous (SYNC = 1, registered output, what a
// block RAM needs) or asynchronous read. INIT names a $readmemh file of D words.
module hwp_cal_rom #(parameter D = 64, W = 8, SYNC = 1, INIT = "rom.hex", A = (D > 1 ? $clog2(D) : 1)) (
    input clk, input [A-1:0] addr, output [W-1:0] q);
    reg [W-1:0] mem [0:D-1];
    initial $readmemh(INIT, mem);
    generate
        if (SYNC) begin : g_sync
            reg [W-1:0] r;
            always @(posedge clk) r <= mem[addr];
            assign q = r;
        end else begin : g_async
            assign q = mem[addr];
        end
    endgenerate
endmodule

// Shift-register FIFO of D words of W bits (the SRL FIFO of a stream): writes shift in,
// the read address is the fill level minus one; valid/ready handshake on both sides.
module hwp_cal_fifo #(parameter D = 16, W = 8, A = (D > 1 ? $clog2(D + 1) : 1)) (
    input clk, input rst, input [W-1:0] din, input din_valid, output din_ready,
    output [W-1:0] dout, output dout_valid, input dout_ready);
    reg [W-1:0] sr [0:D-1];
    reg [A-1:0] count;
    wire push = din_valid && din_ready, pop = dout_valid && dout_ready;
    integer i;
    always @(posedge clk) begin
        if (push) begin
            sr[0] <= din;
            for (i = 1; i < D; i = i + 1) sr[i] <= sr[i-1];
        end
        if (rst) count <= 0;
        else count <= count + push - pop;
    end
    assign din_ready = count != D;
    assign dout_valid = count != 0;
    assign dout = sr[count - 1];
endmodule

// max(a, b) of two signed N-bit values (a comparator and a 2:1 multiplexer).
module hwp_cal_max #(parameter N = 16) (input signed [N-1:0] a, input signed [N-1:0] b, output signed [N-1:0] y);
    assign y = a > b ? a : b;
endmodule

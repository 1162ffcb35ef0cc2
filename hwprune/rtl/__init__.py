"""RTL reference engines (Verilog generated from IR layers), checked with Verilator and yosys."""

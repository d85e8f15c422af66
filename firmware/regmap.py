"""The field node's Modbus register map: the one source every other place is checked against.

drivers/profiles/field_node.toml (what the gateway polls) is checked against :func:`describe`
by tests/test_firmware_profile.py, which runs this module under the MicroPython unix port, so
the profile and the firmware cannot drift apart. firmware/README.md shows the same table.

Addresses are 0-based protocol addresses. 32-bit values are big-endian, high word first
(float32 IEEE 754; uint32 counts). Input registers (FC04) are live data and the history
window; holding registers (FC03 read, FC06/FC16 write) are what the gateway sets.
"""

VERSION = 1

# ---- input registers (FC04): live values
MAX_ANALOG = 4
MAX_PULSE = 2
MAX_DIGITAL = 8
IR_ANALOG = 0        # channel i at IR_ANALOG + 4 i: value f32 (2 words), status, loop current uA
ANALOG_STRIDE = 4
IR_PULSE = 16        # channel j at IR_PULSE + 4 j: total u32 (2 words), status, pulses unsaved
PULSE_STRIDE = 4
IR_DIGITAL = 24      # debounced digital inputs, bit k = input k
IR_RELAY = 25        # relay output state (0/1)
IR_NODE_STATUS = 26  # NODE_* bits below
IR_BOOT = 27         # boot counter (u16), the "boot" of unsynced history records
IR_UPTIME = 28       # u32 seconds since this boot (monotonic ticks)
IR_CLOCK = 30        # u32 UTC seconds, 0 while unsynced
IR_LOG_HEAD = 32     # u32 sequence number the next record will get
IR_LOG_OLDEST = 34   # u32 oldest sequence number still in the log
IR_LOG_CAPACITY = 36  # u32 records the ring holds
IR_VERSION = 38      # register map version (VERSION)
IR_HEAP_FREE = 39    # free heap after the last collection, bytes (saturates at 65535)
LIVE_COUNT = 40

# ---- input registers (FC04): history window, positioned by HR_CURSOR
IR_HIST = 100        # +0 records in the window (0..HIST_MAX), +1..+2 u32 seq of the first
HIST_HEADER = 3
REC_WORDS = 8        # seq u32, time u32, boot, channel << 8 | flags, value (2 words)
HIST_MAX = 15        # 3 + 15 * 8 = 123 words: one FC04 read of at most 125
HIST_COUNT = HIST_HEADER + HIST_MAX * REC_WORDS

# ---- holding registers (FC03 / FC06 / FC16)
HR_TIME = 0          # u32 UTC seconds; an FC16 of both words sets the clock
HR_RELAY = 2         # 0 open, 1 closed
HR_CURSOR = 3        # u32 seq of the first record the history window shows (FC16, 2 words)
HR_UNIT = 5          # config: unit id 1..247          (applied by HR_COMMIT)
HR_BAUD = 6          # config: baud / 100 (96..1152)   (applied by HR_COMMIT)
HR_PERIOD = 7        # config: log period, seconds     (applied by HR_COMMIT)
HR_COMMIT = 8        # write COMMIT_MAGIC: save the config to flash, then reset
HOLDING_COUNT = 9
COMMIT_MAGIC = 0xA55A

# ---- status words
ST_OK = 0            # measuring
ST_LOW = 1           # NE 43: loop current < 3.6 mA (broken wire, dead transmitter)
ST_HIGH = 2          # NE 43: loop current > 21 mA (transmitter failure, short)
ST_OFF = 3           # channel not configured

NODE_UNSYNCED = 1    # the gateway has not set the clock since boot
NODE_CONFIG_DEFAULT = 2  # the config on flash was broken: running on the safe default
NODE_LOG_ERROR = 4   # the last log write failed
NODE_WDT_RESET = 8   # this boot followed a watchdog reset
NODE_CONFIG_PENDING = 16  # config registers written, not yet committed

# ---- history record channel numbers and flags
CH_PULSE0 = 8        # analog channels are 0..3, pulse channels 8..9 (value = u32 total)
CH_DIGITAL = 16      # value = u32 digital bitmask
CH_CLOCK = 255       # clock set: time = the new UTC, value = u32 uptime seconds at the set
FLAG_UNSYNCED = 0x80  # time is uptime seconds of boot ``boot``, not UTC
FLAG_STATUS = 0x0F   # the channel's ST_* at the sample


def describe() -> dict:
    """The map as plain data (the no-drift check compares the gateway profile with it)."""
    analog = []
    for i in range(MAX_ANALOG):
        a = IR_ANALOG + ANALOG_STRIDE * i
        analog.append({"value": a, "dtype": "float32", "status": a + 2, "current_ua": a + 3})
    pulse = []
    for j in range(MAX_PULSE):
        a = IR_PULSE + PULSE_STRIDE * j
        pulse.append({"value": a, "dtype": "uint32", "status": a + 2, "unsaved": a + 3})
    return {
        "version": VERSION, "function": 4, "analog": analog, "pulse": pulse,
        "digital": IR_DIGITAL, "relay": IR_RELAY, "node_status": IR_NODE_STATUS,
        "status_ok": ST_OK, "status_fault": [ST_LOW, ST_HIGH, ST_OFF],
        "live_count": LIVE_COUNT, "hist": IR_HIST, "hist_max": HIST_MAX,
        "rec_words": REC_WORDS, "hr_time": HR_TIME, "hr_cursor": HR_CURSOR,
        "hr_relay": HR_RELAY, "holding_count": HOLDING_COUNT,
    }

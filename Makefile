# mod_ratelimit2 -- top-level build.
#
#   make            core library, Apache module, test programs
#   make check      install dependencies, build, run every test suite
#   make demo       build and run Apache with the module on loopback
#   make fuzz       run the libFuzzer targets for a bounded time
#   make SAN=1 ...  the same with AddressSanitizer + UBSan
#   make clean

SAN      ?= 0
CC       ?= cc
APXS     ?= apxs
BUILD    ?= build

comma    := ,
WARN     := -Wall -Wextra -Werror
CFLAGS_C := -std=c11 -D_GNU_SOURCE -O2 -g -fPIC $(WARN) -Icommon/include
LDLIBS   := -lconfig -lhiredis -lpthread -lrt

ifeq ($(SAN),1)
BUILD    := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all
CFLAGS_C += $(SANFLAGS) -O1
LDSAN    := $(SANFLAGS)
APXS_SAN := -Wc,-fsanitize=address -Wc,-fsanitize=undefined \
            -Wc,-fno-omit-frame-pointer -Wl,-fsanitize=address \
            -Wl,-fsanitize=undefined
endif

CORE_SRC := $(sort $(wildcard common/*.c))
CORE_OBJ := $(CORE_SRC:common/%.c=$(BUILD)/common/%.o)
LIB      := $(BUILD)/libratelimit2.a

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(sort $(wildcard tests/tools/*.c))
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)

# ratelimit2-fcgi (the FastCGI daemon) and ratelimit2-cgi (the CGI
# wrapper) share the CGI-variable and response code.
FCGI_SHARED := fcgi/request.c fcgi/response.c fcgi/policy.c \
               fcgi/store_opts.c
FCGI_SRC := fcgi/main.c fcgi/worker.c fcgi/vet.c fcgi/authorizer.c \
            fcgi/generation.c fcgi/listen.c fcgi/log.c $(FCGI_SHARED)
CGI_SRC  := fcgi/cgi.c $(FCGI_SHARED)
FCGI_BIN := $(BUILD)/fcgi/ratelimit2-fcgi
CGI_BIN  := $(BUILD)/fcgi/ratelimit2-cgi

MODULE   := $(BUILD)/mod_ratelimit2.so
MOD_SRC  := $(sort $(wildcard mod_ratelimit2/*.c))

.PHONY: all lib module fcgi tests check demo fuzz clean deps

all: lib module fcgi tests ctl

deps:
	@scripts/deps.sh

lib: $(LIB)
module: $(MODULE)
fcgi: $(FCGI_BIN) $(CGI_BIN)
tests: $(UNIT_BIN) $(TOOL_BIN)

$(BUILD)/common/%.o: common/%.c $(wildcard common/include/ratelimit2/*.h) \
                     $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) -c -o $@ $<

$(LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/fcgi/%.o: fcgi/%.c fcgi/fcgi.h \
                   $(wildcard common/include/ratelimit2/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) -c -o $@ $<

$(FCGI_BIN): $(FCGI_SRC:fcgi/%.c=$(BUILD)/fcgi/%.o) $(LIB)
	$(CC) $(CFLAGS_C) -o $@ $(filter %.o,$^) $(LIB) -lfcgi $(LDLIBS) \
	    $(LDSAN)

$(CGI_BIN): $(CGI_SRC:fcgi/%.c=$(BUILD)/fcgi/%.o) $(LIB)
	$(CC) $(CFLAGS_C) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS) $(LDSAN)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) -Itests/unit -o $@ $< $(LIB) -lcmocka $(LDLIBS) \
	    $(LDSAN)

$(BUILD)/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) -o $@ $< $(LIB) $(LDLIBS) $(LDSAN)

# apxs drives libtool; -Wc passes compiler flags, -Wl linker flags.  The
# core is linked in statically so the module has no extra runtime path.
$(MODULE): $(MOD_SRC) $(LIB) $(wildcard mod_ratelimit2/*.h)
	@mkdir -p $(BUILD)/mod
	cp $(MOD_SRC) $(wildcard mod_ratelimit2/*.h) $(BUILD)/mod/
	cd $(BUILD)/mod && $(APXS) -c -o mod_ratelimit2.so \
	    -Wc,-std=gnu11 $(addprefix -Wc$(comma),$(WARN)) \
	    -I$(CURDIR)/common/include \
	    $(APXS_SAN) \
	    $(notdir $(MOD_SRC)) $(abspath $(LIB)) -lconfig -lhiredis -lrt \
	    >build.log 2>&1 \
	    || { cat build.log; exit 1; }
	cp $(BUILD)/mod/.libs/mod_ratelimit2.so $@

# ratelimit2ctl: the operator's tool; one file per subcommand.  It reads
# -R/-O like ratelimit2-fcgi, with the same parser (fcgi/store_opts.c).
CTL_SRC  := $(sort $(wildcard ctl/*.c))
CTL_BIN  := $(BUILD)/ctl/ratelimit2ctl

.PHONY: ctl
ctl: $(CTL_BIN)

$(BUILD)/ctl/%.o: ctl/%.c ctl/ctl.h fcgi/fcgi.h \
                  $(wildcard common/include/ratelimit2/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) -c -o $@ $<

$(CTL_BIN): $(CTL_SRC:ctl/%.c=$(BUILD)/ctl/%.o) $(BUILD)/fcgi/store_opts.o \
            $(LIB)
	$(CC) $(CFLAGS_C) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS) $(LDSAN)

check: deps
	@$(MAKE) --no-print-directory all
	@SAN=$(SAN) BUILD=$(BUILD) tests/run-all.sh

demo: deps
	@$(MAKE) --no-print-directory lib module
	@SAN=$(SAN) BUILD=$(BUILD) scripts/demo.sh

fuzz: deps
	@$(MAKE) --no-print-directory lib
	@BUILD=$(BUILD) tests/fuzz/run.sh

clean:
	rm -rf build

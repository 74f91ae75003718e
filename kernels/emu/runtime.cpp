// The emulator's execution engine (see shim.h for the model).
#include "shim.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#ifdef DCGAN_EMU_THREADS
#include <barrier>
#include <memory>
#include <thread>
#endif

namespace emu {

thread_local ThreadIds ids __attribute__((tls_model("initial-exec")));
static thread_local std::string last_error;

static inline unsigned linear_tid() {
    return ids.thread.x + ids.block_dim.x * (ids.thread.y + ids.block_dim.y * ids.thread.z);
}
int lane_id() { return (int)(linear_tid() & 31u); }

static bool check_dims(const unsigned* grid, const unsigned* block) {
    const unsigned long threads = (unsigned long)block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 ||
        grid[2] > 65535) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "invalid launch configuration: grid (%u, %u, %u), block (%u, %u, %u)", grid[0],
                      grid[1], grid[2], block[0], block[1], block[2]);
        last_error = buf;
        return false;
    }
    return true;
}

#ifndef DCGAN_EMU_THREADS
// ---------------------------------------------------------------------------------------
// Fibers. On x86-64 a six-register context switch; elsewhere ucontext.

enum State { RUN, WAIT_BLOCK, WAIT_WARP, DONE };

#if defined(__x86_64__)
extern "C" void dcgan_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .globl dcgan_emu_switch
    .hidden dcgan_emu_switch
    .type dcgan_emu_switch, @function
dcgan_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size dcgan_emu_switch, .-dcgan_emu_switch
)");
#else
#include <ucontext.h>
#endif

static constexpr size_t STACK = 128 * 1024;

struct Fiber {
#if defined(__x86_64__)
    void* sp;
#else
    ucontext_t uc;
#endif
    State state;
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<char*> stacks;
    unsigned threads = 0, current = 0;
#if defined(__x86_64__)
    void* sched_sp = nullptr;
#else
    ucontext_t sched;
#endif
    uint32_t slots[32][32];
    void (*fn)(void*) = nullptr;
    void* ctx = nullptr;
    ~Block() {
        for (char* s : stacks) std::free(s);
    }
};

static thread_local Block* blk = nullptr;

static void to_scheduler(State s) {
    Block* b = blk;
    Fiber& f = b->fibers[b->current];
    f.state = s;
#if defined(__x86_64__)
    dcgan_emu_switch(&f.sp, b->sched_sp);
#else
    swapcontext(&f.uc, &b->sched);
#endif
}

static void fiber_main() {
    Block* b = blk;
    b->fn(b->ctx);
    to_scheduler(DONE);
    std::abort();  // a finished fiber is never resumed
}

void syncthreads() { to_scheduler(WAIT_BLOCK); }

uint32_t warp_exchange(uint32_t v, int src) {
    Block* b = blk;
    const unsigned t = linear_tid(), warp = t >> 5, lane = t & 31u;
    const unsigned lanes = std::min(32u, b->threads - warp * 32u);
    b->slots[warp][lane] = v;
    to_scheduler(WAIT_WARP);
    const uint32_t r = (src >= 0 && (unsigned)src < lanes) ? b->slots[warp][src] : v;
    to_scheduler(WAIT_WARP);
    return r;
}

static void start_fiber(Block& b, unsigned i) {
    Fiber& f = b.fibers[i];
    f.state = RUN;
#if defined(__x86_64__)
    void** sp = reinterpret_cast<void**>(b.stacks[i] + STACK);
    *--sp = nullptr;                                       // fiber_main's return address slot
    *--sp = reinterpret_cast<void*>(&fiber_main);          // where `ret` goes
    for (int r = 0; r < 6; ++r) *--sp = nullptr;           // rbp rbx r12-r15
    f.sp = sp;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = b.stacks[i];
    f.uc.uc_stack.ss_size = STACK;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, fiber_main, 0);
#endif
}

static void resume(Block& b, unsigned i) {
    b.current = i;
    const unsigned bx = ids.block_dim.x, by = ids.block_dim.y;
    ids.thread.x = i % bx;
    ids.thread.y = (i / bx) % by;
    ids.thread.z = i / (bx * by);
#if defined(__x86_64__)
    dcgan_emu_switch(&b.sched_sp, b.fibers[i].sp);
#else
    swapcontext(&b.sched, &b.fibers[i].uc);
#endif
}

// One block: run every runnable fiber in order until it blocks; then release the barrier
// that every live participant has reached; repeat until all are done.
static bool run_block(Block& b) {
    for (unsigned i = 0; i < b.threads; ++i) start_fiber(b, i);
    for (;;) {
        for (unsigned i = 0; i < b.threads; ++i)
            if (b.fibers[i].state == RUN) resume(b, i);
        unsigned live = 0, at_block = 0;
        for (unsigned i = 0; i < b.threads; ++i) {
            live += b.fibers[i].state != DONE;
            at_block += b.fibers[i].state == WAIT_BLOCK;
        }
        if (live == 0) return true;
        if (at_block == live) {
            for (auto& f : b.fibers)
                if (f.state == WAIT_BLOCK) f.state = RUN;
            continue;
        }
        bool released = false;
        for (unsigned w = 0; w * 32 < b.threads; ++w) {
            const unsigned end = std::min(b.threads, w * 32 + 32);
            unsigned wlive = 0, wwait = 0;
            for (unsigned i = w * 32; i < end; ++i) {
                wlive += b.fibers[i].state != DONE;
                wwait += b.fibers[i].state == WAIT_WARP;
            }
            if (wlive > 0 && wwait == wlive) {
                for (unsigned i = w * 32; i < end; ++i)
                    if (b.fibers[i].state == WAIT_WARP) b.fibers[i].state = RUN;
                released = true;
            }
        }
        if (!released) {
            char buf[200];
            std::snprintf(buf, sizeof buf,
                          "deadlock in block (%u, %u, %u): %u live threads, %u at __syncthreads, the rest at a "
                          "warp shuffle with lanes elsewhere",
                          ids.block.x, ids.block.y, ids.block.z, live, at_block);
            last_error = buf;
            return false;
        }
    }
}

int run_grid_erased(const unsigned* grid, const unsigned* block, void (*fn)(void*), void* ctx) {
    if (!check_dims(grid, block)) return 1;
    static thread_local Block b;
    b.threads = block[0] * block[1] * block[2];
    b.fibers.resize(b.threads);
    while (b.stacks.size() < b.threads) b.stacks.push_back(static_cast<char*>(std::aligned_alloc(64, STACK)));
    b.fn = fn;
    b.ctx = ctx;
    Block* saved = blk;
    blk = &b;
    const ThreadIds saved_ids = ids;
    ids.block_dim = dim3{block[0], block[1], block[2]};
    ids.grid_dim = dim3{grid[0], grid[1], grid[2]};
    int rc = 0;
    for (unsigned z = 0; z < grid[2] && rc == 0; ++z)
        for (unsigned y = 0; y < grid[1] && rc == 0; ++y)
            for (unsigned x = 0; x < grid[0] && rc == 0; ++x) {
                ids.block = dim3{x, y, z};
                if (!run_block(b)) rc = 2;
            }
    ids = saved_ids;
    blk = saved;
    return rc;
}

#else
// ---------------------------------------------------------------------------------------
// OS threads: one std::thread per CUDA thread of a block, std::barrier for __syncthreads and
// for each warp's shuffles. Blocks run one after another.

struct Block {
    unsigned threads = 0;
    std::unique_ptr<std::barrier<>> bar;
    std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
    uint32_t slots[32][32];
};
static Block* blk = nullptr;

void syncthreads() { blk->bar->arrive_and_wait(); }

uint32_t warp_exchange(uint32_t v, int src) {
    Block* b = blk;
    const unsigned t = linear_tid(), warp = t >> 5, lane = t & 31u;
    const unsigned lanes = std::min(32u, b->threads - warp * 32u);
    b->slots[warp][lane] = v;
    b->warp_bars[warp]->arrive_and_wait();
    const uint32_t r = (src >= 0 && (unsigned)src < lanes) ? b->slots[warp][src] : v;
    b->warp_bars[warp]->arrive_and_wait();
    return r;
}

int run_grid_erased(const unsigned* grid, const unsigned* block, void (*fn)(void*), void* ctx) {
    if (!check_dims(grid, block)) return 1;
    Block b;
    b.threads = block[0] * block[1] * block[2];
    const dim3 bd{block[0], block[1], block[2]}, gd{grid[0], grid[1], grid[2]};
    blk = &b;
    for (unsigned z = 0; z < grid[2]; ++z)
        for (unsigned y = 0; y < grid[1]; ++y)
            for (unsigned x = 0; x < grid[0]; ++x) {
                b.bar = std::make_unique<std::barrier<>>(b.threads);
                b.warp_bars.clear();
                for (unsigned w = 0; w * 32 < b.threads; ++w)
                    b.warp_bars.push_back(std::make_unique<std::barrier<>>(std::min(32u, b.threads - w * 32)));
                std::vector<std::thread> ts;
                ts.reserve(b.threads);
                for (unsigned i = 0; i < b.threads; ++i) {
                    ts.emplace_back([&, i, x, y, z] {
                        ids.block_dim = bd;
                        ids.grid_dim = gd;
                        ids.block = dim3{x, y, z};
                        ids.thread = dim3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
                        fn(ctx);
                        b.warp_bars[i >> 5]->arrive_and_drop();
                        b.bar->arrive_and_drop();
                    });
                }
                for (auto& t : ts) t.join();
            }
    blk = nullptr;
    return 0;
}
#endif

}  // namespace emu

extern "C" const char* dcgan_emu_last_error() { return emu::last_error.c_str(); }

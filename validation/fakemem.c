/* LD_PRELOAD shim: make a process (ggml-rpc-server) report FAKE_PHYS_MIB of physical memory,
 * so a CPU-only RPC server advertises a memory-limited "GPU" to llama.cpp. Allocation itself
 * is not limited; only what the device reports. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

long sysconf(int name) {
    static long (*real_sysconf)(int) = 0;
    if (!real_sysconf) real_sysconf = (long (*)(int))dlsym(RTLD_NEXT, "sysconf");
    if (name == _SC_PHYS_PAGES) {
        const char *mib = getenv("FAKE_PHYS_MIB");
        if (mib && *mib) return (long)((atoll(mib) * 1024LL * 1024LL) / real_sysconf(_SC_PAGE_SIZE));
    }
    return real_sysconf(name);
}

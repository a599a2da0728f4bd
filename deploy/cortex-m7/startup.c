/* startup.c: the least a Cortex-M7 needs to run the captioner bare-metal: a vector table,
 * a reset handler that turns the FPU on, copies .data, zeroes .bss and calls main, and
 * Arm semihosting for output and exit (QEMU's -semihosting, or a debugger). */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

/* Semihosting call: operation in r0, argument in r1, result in r0. */
static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Writes a NUL-terminated string to the host's console. */
void semihost_write(const char *s)
{
    semihost(0x04, s); /* SYS_WRITE0 */
}

static void semihost_exit(int code)
{
    /* SYS_EXIT with ADP_Stopped_ApplicationExit; a nonzero code as RunTimeErrorUnknown. */
    semihost(0x18, (const void *)(uintptr_t)(code == 0 ? 0x20026 : 0x20023));
    for (;;) {
    }
}

void Reset_Handler(void)
{
    /* CPACR: full access to CP10 and CP11, the FPU. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n isb");
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; ++dst) *dst = 0;
    semihost_exit(main());
}

static void Fault_Handler(void)
{
    semihost_write("fault\n");
    semihost_exit(1);
}

__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &_estack,      (const void *)Reset_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler,
};

/* What newlib's libc may call without an operating system. */
void _exit(int code)
{
    semihost_exit(code);
}

#!/bin/sh
# Run by busybox acpid on the ACPI power button (QMP system_powerdown, which the engine's
# vm.stop sends): the guest flushes and unmounts its disk and powers off, so QEMU exits at
# once instead of being killed when the stop's grace runs out.
echo "FERRY-POWER-OFF" > /dev/ttyS0
sync
umount /data 2>/dev/null || mount -o remount,ro /data 2>/dev/null
poweroff -f

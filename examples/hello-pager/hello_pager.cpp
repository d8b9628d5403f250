// The README's example: a mapping whose pages come from a pager thread.
#include <lib/zx/pager.h>
#include <lib/zx/port.h>
#include <lib/zx/vmar.h>
#include <lib/zx/vmo.h>
#include <stdio.h>
#include <string.h>

#include <thread>

int main() {
  zx::pager pager;
  zx::port port;
  zx::vmo vmo, aux;
  zx::pager::create(0, &pager);
  zx::port::create(0, &port);
  pager.create_vmo(0, port, /*key=*/42, 16 * 4096, &vmo);
  zx::vmo::create(16 * 4096, 0, &aux);
  zx_vaddr_t addr;
  zx::vmar::root_self()->map(ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0, vmo, 0, 16 * 4096, &addr);

  std::thread pager_thread([&] {  // answers one page request
    zx_port_packet_t packet;
    port.wait(zx::time::infinite(), &packet);
    char text[4096] = {};
    snprintf(text, sizeof(text), "hello from the pager, page at offset %lu",
             static_cast<unsigned long>(packet.page_request.offset));
    aux.write(text, 0, sizeof(text));
    pager.supply_pages(vmo, packet.page_request.offset, 4096, aux, 0);
  });
  printf("%s\n", reinterpret_cast<const char*>(addr + 3 * 4096));  // a real page fault
  pager_thread.join();
  return 0;
}

/* A free-list allocator over a static heap, as in BareFlow's malloc_llvm.c. */
#include "kernel.h"

#define HEAP_SIZE (256 * 1024)

typedef struct block {
    size_t size;
    struct block *next;
    struct block *prev;
    int free;
} block_t;

static uint8_t heap[HEAP_SIZE] __attribute__((aligned(16)));
static block_t *free_list;
static int heap_initialized;

size_t malloc_get_heap_size(void) { return HEAP_SIZE; }

static void heap_init(void) {
    block_t *initial_block = (block_t *)heap;
    initial_block->size = HEAP_SIZE - sizeof(block_t);
    initial_block->next = 0;
    initial_block->prev = 0;
    initial_block->free = 1;
    free_list = initial_block;
    heap_initialized = 1;
}

void *malloc(size_t size) {
    if (!heap_initialized)
        heap_init();
    size = (size + 15) & ~(size_t)15;
    for (block_t *b = free_list; b; b = b->next) {
        if (!b->free || b->size < size)
            continue;
        if (b->size >= size + sizeof(block_t) + 16) {
            block_t *rest = (block_t *)((uint8_t *)(b + 1) + size);
            rest->size = b->size - size - sizeof(block_t);
            rest->next = b->next;
            rest->prev = b;
            rest->free = 1;
            b->size = size;
            b->next = rest;
        }
        b->free = 0;
        return b + 1;
    }
    return 0;
}

void free(void *ptr) {
    if (ptr)
        ((block_t *)ptr - 1)->free = 1;
}

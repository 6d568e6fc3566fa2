import time, numpy as np
f32=np.float32
n,L,d=1284,50,768
N=n*L*d
rng=np.random.default_rng(0)
x=np.empty((n,L,d),f32); x.fill(0)
def tm(f, k=3):
    ts=[]
    for _ in range(k):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return round(min(ts),3)
print('random f32 out', tm(lambda: rng.random(out=x, dtype=f32)))
print('normal f32 out', tm(lambda: rng.standard_normal(out=x, dtype=f32)))
def b16(): 
    b=np.frombuffer(rng.bytes(2*N), dtype=np.int16).reshape(x.shape); np.copyto(x, b, casting='unsafe')
print('bytes int16 copyto', tm(b16))
def i16():
    b=rng.integers(-32768, 32768, size=x.shape, dtype=np.int16); np.copyto(x, b, casting='unsafe')
print('integers int16 copyto', tm(i16))
def blk():
    for c in range(0,n,128): rng.random(out=x[c:c+128], dtype=f32)
print('random f32 blocks', tm(blk))
def b16blk():
    for c in range(0,n,128):
        xb=x[c:c+128]; b=np.frombuffer(rng.bytes(2*xb.size), dtype=np.int16).reshape(xb.shape); np.copyto(xb, b, casting='unsafe')
print('bytes int16 blocks', tm(b16blk))
